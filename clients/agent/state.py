"""What linkbroker-agent made, by broker link ID: the only links it ever deletes.

The agent deletes nothing by name from a label: a name can be anybody's (the host's NIC,
another zone's port). It records the broker IDs of the links it created for each container, and
of the bridges it created, and removes exactly those (IDs are never reused, so a recorded ID
can only name what the agent made). The record is kept in a small JSON file, when given, so a
restarted agent still cleans up after containers that stopped meanwhile; it is rewritten
atomically (temporary file, fsync, rename) after every change. Keep it in the broker's state
directory (the lab does): IDs are unique within one broker store, so the record must not
outlive the store it came from (the agent also leaves alone any recorded ID that names a link
a zone owns, which it could never have made).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

__all__ = ["AgentState", "Made"]

LOG = logging.getLogger("linkbroker-agent")


@dataclass
class Made:
    """What the agent made for one container: its zone's name and link IDs."""

    zone: str
    links: list[int] = field(default_factory=list)


@dataclass
class AgentState:
    path: str | None = None
    containers: dict[str, Made] = field(default_factory=dict)
    bridges: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, path: str | None) -> AgentState:
        state = cls(path)
        if path is None:
            return state
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            for cid, made in dict(data.get("containers", {})).items():
                state.containers[str(cid)] = Made(
                    str(made["zone"]), [int(i) for i in made.get("links", [])])
            state.bridges = {int(i) for i in data.get("bridges", [])}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            LOG.error("state file %s unreadable (%s): starting with nothing recorded", path,
                      exc)
        return state

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "containers": {cid: {"zone": m.zone, "links": m.links}
                           for cid, m in sorted(self.containers.items())},
            "bridges": sorted(self.bridges),
        }
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            LOG.error("cannot write state file %s: %s", self.path, exc)

    def made_for(self, container: str, zone: str) -> Made:
        made = self.containers.get(container)
        if made is None or made.zone != zone:
            made = self.containers[container] = Made(zone)
            self.save()
        return made

    def record(self, container: str, link_id: int) -> None:
        made = self.containers.get(container)
        if made is not None and link_id not in made.links:
            made.links.append(link_id)
            self.save()
