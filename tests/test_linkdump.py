"""The lean RTM_GETLINK parser agrees with pyroute2 on every link kind the kernel has."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from broker._netlink import ZoneNetlink
from tests.conftest import run


def test_lean_dump_equals_pyroute2(netns: Any, names: Any) -> None:
    ns = netns("dump")
    ip = ["ip", "-n", ns, "link"]
    br, va, vb, mv, mt, vx, tp = (names.link(x) for x in ("br", "a", "b", "m", "t", "x", "p"))
    run(*ip, "add", br, "type", "bridge")
    run(*ip, "add", va, "mtu", "1400", "type", "veth", "peer", "name", vb)
    run(*ip, "set", va, "master", br, "up")
    run(*ip, "add", mv, "link", vb, "type", "macvlan", "mode", "private")
    run(*ip, "add", mt, "link", vb, "type", "macvtap", "mode", "vepa")
    run(*ip, "add", vx, "type", "vxlan", "id", "42", "local", "2001:db8::1",
        "remote", "2001:db8::2", "dstport", "4790")
    run("ip", "-n", ns, "tuntap", "add", "dev", tp, "mode", "tap")

    async def both() -> tuple[list[Any], list[Any]]:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        zn = ZoneNetlink.open(fd)
        try:
            return await zn.dump(), await zn.dump_pyroute2()
        finally:
            zn.close()
            os.close(fd)

    lean, reference = asyncio.run(both())
    assert len(lean) == len(reference) == 8  # lo and the seven above
    assert {k.name: k for k in lean} == {k.name: k for k in reference}
    by_name = {k.name: k for k in lean}
    assert by_name[mv].mode == "private" and by_name[mt].mode == "vepa"
    assert by_name[vx].vni == 42 and by_name[vx].port == 4790
    assert by_name[vx].remote == "2001:db8::2" and by_name[tp].tun_tap
    assert by_name[vx].local == "2001:db8::1"
    assert by_name[va].master == by_name[br].ifindex and by_name[va].mtu == 1400
