"""The agent's addr= label goes through the broker (issue 13, item 4), against a real broker
and a real namespace: the address lands on the zone's link, the broker lists it as the zone's,
and the agent holds no netlink code of its own (issue 12, finding 8, closed for good: nothing
of the agent enters a namespace by a pid that could be reused)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from clients.agent.engine import delete_made
from clients.agent.labels import LinkDecl
from clients.agent.main import Agent
from tests.conftest import BrokerProcess, run

CONTAINER = "c0ffee" * 10 + "abcd"  # 64 hex digits, as Docker's IDs


def test_agent_addr_label_is_set_through_the_broker(broker: BrokerProcess, netns: Any,
                                                    names: Any) -> None:
    ns = netns("agentaddr")
    zone = names.ns("agentz")
    host = names.link("h")
    with broker.client() as c:
        c.boot_zone(zone, netns=ns)
    agent = Agent(socket=broker.socket, docker_factory=lambda: None)
    agent.state.made_for(CONTAINER, zone)
    try:
        decl = LinkDecl("eth0", "veth", host=host, addr="198.51.100.9/24")
        agent.make_link(CONTAINER, zone, decl)
        shown = run("ip", "-n", ns, "-o", "addr", "show", "dev", "eth0").stdout
        assert "198.51.100.9/24" in shown, shown
        with broker.client() as c:
            listed = [(a.link, a.address, a.zone) for a in c.list_addresses("eth0", zone)]
        assert ("eth0", "198.51.100.9/24", zone) in listed
        # The same label applied again (the container booted once more) is satisfied as is.
        agent.add_address(zone, "eth0", "198.51.100.9/24")
        again = run("ip", "-n", ns, "-o", "addr", "show", "dev", "eth0").stdout
        assert again.count("198.51.100.9/24") == 1, again
        # The agent recorded both ends it made, by broker ID, and nothing else.
        assert len(agent.state.containers[CONTAINER].links) == 2
    finally:
        # As the agent cleans up after a container: halt (the lent end comes home under an
        # lbN name), then delete what it recorded making, by ID.
        with broker.client() as c:
            c.halt_zone(zone)
        delete_made(agent._call, zone, agent.state.containers[CONTAINER].links)
    assert host not in run("ip", "-o", "link", "show").stdout


def test_the_agent_loads_no_netlink_library() -> None:
    """A fresh interpreter imports the agent without pyroute2 (nor the daemon's modules)."""
    probe = ("import sys, clients.agent.main; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyroute2' "
             "or m in ('broker._service', 'broker._daemon', 'broker._rtnl')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]", out
