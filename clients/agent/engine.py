"""linkbroker-agent's dealings with the Docker engine and its clean-up through the broker.

Split from :mod:`clients.agent.main` to keep modules small: which labels of a container count (the
operator's, not the image's), whether a container runs, and removing exactly what the agent
recorded making (:mod:`clients.agent.state`), by broker link ID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from broker.client import Client, LinkbrokerError, LinkNotFound
from clients.agent.labels import LABEL_PREFIX, operator_labels
from clients.agent.state import AgentState

__all__ = [
    "delete_made",
    "deleting",
    "docker_from_env",
    "gc_bridges",
    "halting",
    "labels_of",
    "running_container",
]

LOG = logging.getLogger("linkbroker-agent")
Call = Callable[[Callable[[Client], Any]], Any]


def deleting(name: str, zone: str) -> Callable[[Client], None]:
    """The DeleteLink call for `_call` (bound now, not when a loop variable changes)."""
    return lambda c: c.delete_link(name, zone)


def halting(name: str) -> Callable[[Client], None]:
    return lambda c: c.halt_zone(name)


def docker_from_env() -> Any:
    import docker

    return docker.from_env(timeout=30)


def labels_of(docker: Any, info: dict[str, Any]) -> dict[str, str]:
    """The io.linkbroker.* labels the operator gave this container (not its image's).

    If the image cannot be inspected its labels cannot be told apart: none count (fail closed).
    """
    labels: dict[str, str] = dict(info.get("Config", {}).get("Labels") or {})
    if not any(k.startswith(LABEL_PREFIX) for k in labels):
        return {}
    cid = str(info.get("Id", ""))[:12]
    try:
        image = docker.api.inspect_image(info["Image"])
    except Exception as exc:  # docker.errors.* and a missing key alike
        LOG.error("container %s: image %s cannot be inspected (%s); labels ignored", cid,
                  info.get("Image"), exc)
        return {}
    trusted, ignored = operator_labels(labels, image.get("Config", {}).get("Labels") or {})
    for key in ignored:
        LOG.warning("container %s: ignored image label %s: labels that come with the image "
                    "are not orders", cid, key)
    return trusted


def running_container(docker: Any, container: str) -> bool:
    try:
        return bool(docker.api.inspect_container(container).get("State", {}).get("Running"))
    except Exception:  # docker.errors.NotFound: gone
        return False


def delete_made(call: Call, zone: str, ids: list[int]) -> None:
    """Delete the links with these broker IDs, wherever they are now (a lent end comes home
    under another name at halt). IDs are never reused, so nothing else can match."""
    for link_id in ids:
        link = next((lk for lk in call(lambda c: c.list_links()) if lk.id == link_id), None)
        if link is None:
            continue  # gone with its peer, or with the zone
        if link.owner != "global":
            # Everything the agent makes is the global zone's: a zone's own link under a
            # recorded ID means the record is not this broker's (a state file outliving
            # the broker's store). Never touch it.
            LOG.error("zone %s: recorded ID %d is %s of zone %s, not the agent's; left alone",
                      zone, link_id, link.name, link.owner)
            continue
        name, where = link.name, link.zone
        try:
            call(deleting(name, where))
            LOG.info("zone %s: deleted %s %s (ID %d)", zone, link.class_, name, link_id)
        except LinkNotFound:
            pass
        except LinkbrokerError as exc:
            LOG.error("zone %s: delete of %s failed: %s", zone, name, exc)


def gc_bridges(call: Call, state: AgentState) -> None:
    """Delete the bridges the agent created that no port is left on."""
    if not state.bridges:
        return
    links = call(lambda c: c.list_links(zone="global"))
    by_id = {lk.id: lk for lk in links}
    for bridge_id in sorted(state.bridges):
        bridge = by_id.get(bridge_id)
        if bridge is not None and any(lk.master == bridge.name for lk in links):
            continue
        state.bridges.discard(bridge_id)
        state.save()
        if bridge is None:
            continue
        name = bridge.name
        try:
            call(deleting(name, "global"))
            LOG.info("deleted bridge %s: no port left", name)
        except LinkNotFound:
            pass
        except LinkbrokerError as exc:
            LOG.error("cleanup of bridge %s failed: %s", name, exc)
