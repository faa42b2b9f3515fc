"""wireguard: the link only. Keys and peers are set over generic netlink (`wg`), not here."""

from __future__ import annotations

from broker._types import LinkSpec
from broker.kinds._base import CreateRequest, LinkKind, Resolved

__all__ = ["Wireguard"]


class Wireguard(LinkKind):
    cls = "wireguard"

    def request(self, spec: LinkSpec, resolved: Resolved) -> CreateRequest:
        return CreateRequest(kind="wireguard")
