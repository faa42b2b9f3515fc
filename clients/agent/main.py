"""linkbroker-agent: the container host agent, a client of the broker.

It follows the Docker engine's event stream and turns labelled containers into zones:

* a container that starts with the label ``io.linkbroker.zone=NAME`` *given by the operator*
  is booted as zone NAME (``BootZone(container=ID)``), then the links its labels declare are
  made for it; labels that come with the image are ignored (:mod:`clients.agent.labels`);
* a container that dies or stops has the container zone booted for *it* halted, and the links
  the agent made for it deleted, by broker ID (:mod:`clients.agent.state`);
* on start, and after every reconnection to the broker or the engine, it reconciles: labelled
  running containers that are not zones yet are booted, container zones whose container is
  gone are halted.

It is a global-zone administrator acting on other people's words, so it is a careful deputy:
it only ever creates new links (an existing name is ``LinkExists``, never adopted), asks the
broker to hold each request to the policy the zone itself would face (``zone_policy``:
``[bridges] attachable``, ``[assign] phys``), never boots or halts a zone that is not the
container zone of the container at hand, and deletes only what it recorded making. An
``addr=`` goes through the broker too (``AddAddress``): the agent has no netlink code and
never enters a namespace itself. See :data:`LABELS_HELP` for the label scheme.

Those decisions are :mod:`clients.agent.reconciler`'s, written against the two protocols of
:mod:`clients.agent.protocols` so they can be tested with fakes; this module is what cannot be:
the command line, the signals, the retries and backoff (broker and engine alike may come and go
while the agent runs) and the wiring of the real broker (:mod:`clients.agent.brokercalls`) and
Docker engine (:mod:`clients.agent.engine`, the only module that imports ``docker``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

from broker.client import Client, LinkbrokerError, default_socket
from clients.agent.brokercalls import BrokerCalls
from clients.agent.engine import DockerEngine, docker_from_env
from clients.agent.labels import (
    LABELS_HELP,
    LabelError,
    LinkDecl,
    operator_labels,
    parse_labels,
)
from clients.agent.reconciler import Reconciler
from clients.agent.state import AgentState

__all__ = ["LABELS_HELP", "Agent", "LabelError", "LinkDecl", "build_parser", "main",
           "operator_labels", "parse_labels"]

LOG = logging.getLogger("linkbroker-agent")
T = TypeVar("T")


@dataclass
class Agent:
    """The wiring: a reconciler over the broker (each call on a fresh connection, retried)
    and the Docker engine (reconnected after each loss), driven by the event loop."""

    socket: str
    docker_factory: Callable[[], Any]
    stop: threading.Event = field(default_factory=threading.Event)
    state: AgentState = field(default_factory=AgentState)
    _broker_lost: bool = False
    engine: DockerEngine = field(init=False)
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        self.engine = DockerEngine(self.docker_factory)
        self.reconciler = Reconciler(BrokerCalls(self._call), self.engine, self.state)

    def client(self) -> Client:
        """A connection to the broker, retried with backoff until it answers (or stop)."""
        delay = 0.2
        while True:
            try:
                return Client(self.socket, timeout=60.0)
            except OSError as exc:
                if self.stop.is_set():
                    raise
                self._broker_lost = True
                LOG.warning("broker at %s unreachable (%s); retrying in %.1fs",
                            self.socket, exc, delay)
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, 5.0)

    def _call(self, fn: Callable[[Client], T]) -> T:
        """One broker call on a fresh connection, reconnecting once if the broker went away."""
        for attempt in range(2):
            with self.client() as client:
                try:
                    return fn(client)
                except (ConnectionError, BrokenPipeError, OSError) as exc:
                    if isinstance(exc, LinkbrokerError) or attempt:
                        raise
                    LOG.warning("broker connection lost (%s); reconnecting", exc)
        raise AssertionError("unreachable")

    def make_link(self, container_id: str, zone: str, decl: LinkDecl) -> None:
        """:meth:`Reconciler.make_link` (tests/test_agent_addresses.py drives it against a
        real broker)."""
        self.reconciler.make_link(container_id, zone, decl)

    def add_address(self, zone: str, ifname: str, address: str) -> None:
        """:meth:`Reconciler.add_address`, as :meth:`make_link`."""
        self.reconciler.add_address(zone, ifname, address)

    def final_sweep(self) -> None:
        """At exit: halt (and clean up after) the container zones whose container is no longer
        running, so stops the event stream had no time to deliver are not left behind."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.engine.connect()
            with Client(self.socket, timeout=5.0) as client:
                zones = client.list_zones()
            self.reconciler.sweep(zones)
        except Exception as exc:  # best effort: the engine or broker may be gone too
            LOG.warning("final sweep incomplete: %s", exc)
        finally:
            self.engine.close()
        LOG.info("exiting")

    def run(self, once: bool) -> int:
        """Reconcile, then follow the engine's events until stopped; after losing the engine
        or the broker, reconnect with backoff and reconcile again."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                self.engine.connect()
                self.engine.ping()
                self._broker_lost = False
                self.reconciler.reconcile()
                if once:
                    return 0
                delay = 0.5
                LOG.info("following Docker events")
                for event in self.engine.events():
                    if self.stop.is_set():
                        break
                    try:
                        self.reconciler.handle(event)
                        if self._broker_lost:
                            self._broker_lost = False
                            LOG.info("broker back: reconciling")
                            self.reconciler.reconcile()
                    except (OSError, LinkbrokerError) as exc:
                        LOG.error("event %s of %s: %s", event.action, event.container[:12],
                                  exc)
                if not self.stop.is_set():
                    LOG.warning("Docker event stream ended; reconnecting")
            except Exception as exc:  # the loop must survive engine/broker loss
                if self.stop.is_set():
                    break
                if once:
                    LOG.error("reconcile failed: %s", exc)
                    return 1
                LOG.warning("lost the engine or broker (%s: %s); retrying in %.1fs",
                            type(exc).__name__, exc, delay)
            finally:
                self.engine.close()
            if self.stop.wait(delay):
                break
            delay = min(delay * 2, 5.0)
        return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line (contrib/manpages.py builds the man page from it)."""
    parser = argparse.ArgumentParser(
        prog="linkbroker-agent",
        description="Boot labelled Docker containers as linkbroker zones and make their links.",
        epilog=LABELS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--socket", default=None,
                        help="the broker's socket (default: $LINKBROKER_SOCKET or "
                             "/run/linkbroker/broker.sock)")
    parser.add_argument("--state-file", default=None, metavar="FILE",
                        help="where to record the IDs of the links the agent made, so a "
                             "restarted agent still removes them (default: memory only)")
    parser.add_argument("--once", action="store_true", help="reconcile once and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, wire, run; on SIGTERM or SIGINT stop following events and sweep once more."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="linkbroker-agent: %(levelname)s %(message)s")
    agent = Agent(socket=default_socket(args.socket), docker_factory=docker_from_env,
                  state=AgentState.load(args.state_file))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("signal %d: exiting", signum)
        agent.stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        code = agent.run(args.once)
    except SystemExit:
        code = 0
    if agent.stop.is_set():
        agent.final_sweep()
    return code


if __name__ == "__main__":
    sys.exit(main())
