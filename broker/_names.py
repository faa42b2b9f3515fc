"""Name rules of the contract, checked before anything is touched.

Link names follow the kernel (IFNAMSIZ-1 bytes, dev_valid_name); zone names are the contract's
own syntax. Both raise InvalidName with the reason, so a caller learns exactly what was wrong.
"""

from __future__ import annotations

import re

from broker._errors import InvalidName

__all__ = ["GLOBAL_OWN_VIEW", "GLOBAL_ZONE", "home_zone", "validate_link_name",
           "validate_zone_name"]

GLOBAL_ZONE = "global"
GLOBAL_OWN_VIEW = "global:own"
"""The view of a global-zone caller without `zone.read`: the global zone's own links only, as
a zone sees its own (never a zone name: ':' is refused in zone names)."""


def home_zone(viewer: str) -> str:
    """The zone whose links a view shows as its own."""
    return GLOBAL_ZONE if viewer == GLOBAL_OWN_VIEW else viewer

_ZONE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_IFNAMSIZ = 16
_KERNEL_SPACE_BYTE = 0xA0


def validate_link_name(name: str) -> str:
    encoded = name.encode("utf-8", "surrogatepass")
    if not encoded:
        raise InvalidName(name, "a link name must not be empty")
    if len(encoded) >= _IFNAMSIZ:
        raise InvalidName(name, f"a link name is at most {_IFNAMSIZ - 1} bytes")
    if name in (".", ".."):
        raise InvalidName(name, "a link name must not be '.' or '..'")
    if name in ("all", "default"):  # /proc/sys/net/*/conf/{all,default}: the kernel refuses
        raise InvalidName(name, f"the link name {name!r} is reserved by the kernel")
    for ch in name:
        # '%' makes the kernel treat the name as a template ('v%d' becomes 'v0').
        if ch in "/:%" or ch.isspace() or ch == "\0":
            raise InvalidName(name, f"a link name must not contain {ch!r}")
    # The kernel checks bytes with its own isspace(), which is true for 0xA0 (lib/ctype.c):
    # a UTF-8 name holding that byte (e.g. 'à' = C3 A0) is refused by dev_valid_name.
    if _KERNEL_SPACE_BYTE in encoded:
        raise InvalidName(name, "a link name must not contain a byte the kernel calls "
                          "whitespace (0xA0)")
    return name


def validate_zone_name(name: str, *, allow_global: bool = False) -> str:
    if not 1 <= len(name) <= 64 or not _ZONE_RE.fullmatch(name) or not name.isascii():
        raise InvalidName(
            name, "a zone name is 1 to 64 characters of [A-Za-z0-9][A-Za-z0-9_.-]*"
        )
    if name == GLOBAL_ZONE and not allow_global:
        raise InvalidName(name, "the zone name 'global' is reserved")
    return name
