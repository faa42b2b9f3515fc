"""The wire, fuzzed against a real broker (issue 6): random and mutated frames, methods and
parameters never crash it, always get a Varlink or contract error (or a valid reply), and never
disturb another connection.

CI runs a bounded number of examples; a longer run is
`LINKBROKER_FUZZ_EXAMPLES=5000 python3 -m pytest tests/test_fuzz_wire.py -s`.
"""

from __future__ import annotations

import json
import os
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker._dispatch import METHODS
from broker._wire import FrameBuffer, decode_reply, encode_call
from tests.conftest import ROOT, BrokerProcess

EXAMPLES = int(os.environ.get("LINKBROKER_FUZZ_EXAMPLES", "300"))
KNOWN_ERRORS = {
    "org.varlink.service.InterfaceNotFound", "org.varlink.service.MethodNotFound",
    "org.varlink.service.InvalidParameter", "org.varlink.service.ExpectedMore",
    "org.varlink.service.MethodNotImplemented",
} | {f"io.linkbroker.{e}" for e in (
    "LinkNotFound", "LinkExists", "ZoneNotFound", "ZoneExists", "ZoneNotRegistered",
    "InvalidName", "PermissionDenied", "NotOwner", "Unsupported", "KernelError",
    "LimitExceeded", "HaltIncomplete")}
# Methods a fuzzer may call from the global zone without lasting effect on the host: reads,
# and writes whose names the strategies keep inside a test prefix.
SAFE = ["WhoAmI", "ListZones", "GetZone", "ListLinks", "GetLink", "RenameLink",
        "SetLinkProperties", "DeleteLink", "CreateLink", "ReclaimLink", "AssignLink"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
fuzz_names = st.sampled_from(["", "x", "lbfz0", "lbfz" + "a" * 20, "a/b", "..", "eth0", "lo",
                              "global", "nosuch", "v%d", "à"])
params = st.fixed_dictionaries({}, optional={
    "name": fuzz_names | json_values, "zone": fuzz_names | json_values,
    "new_name": fuzz_names, "mtu": st.integers(-5, 70000) | json_values,
    "up": st.booleans() | json_values, "class": st.text(max_size=8),
    "link": st.fixed_dictionaries({"name": fuzz_names, "class": st.sampled_from(
        ["bridge", "veth", "vxlan", "tap", "phys", "nope"])}, optional={
        "peer": fuzz_names, "vni": json_values, "mtu": json_values, "mac": st.text(max_size=20),
        "parent": fuzz_names, "zone": fuzz_names, "bogus": json_values}),
    "bogus": json_values,
})
calls = st.builds(
    lambda m, p, more, oneway: json.dumps({"method": m, "parameters": p, **(
        {"more": True} if more else {}), **({"oneway": True} if oneway else {})}).encode(),
    st.sampled_from([f"io.linkbroker.{m}" for m in SAFE] + [
        "io.linkbroker.Nope", "org.varlink.service.GetInfo", "org.varlink.service.Nope",
        "com.example.X", "", "io.linkbroker."]),
    params, st.booleans(), st.booleans())
garbage = st.binary(max_size=200).map(lambda b: b.replace(b"\0", b""))
mutated = st.tuples(calls, st.integers(0, 200), st.binary(min_size=1, max_size=3)).map(
    lambda t: (t[0][:t[1]] + t[2] + t[0][t[1]:]).replace(b"\0", b""))


def exchange(sock: socket.socket, frame: bytes, buf: FrameBuffer) -> list[bytes]:
    sock.sendall(frame + b"\0" + encode_call("io.linkbroker.WhoAmI"))
    frames: list[bytes] = []
    # The WhoAmI sent after every frame marks the end of the fuzzed frame's replies.
    while not any(b'"authorizations"' in f for f in frames):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        frames.extend(buf.feed(chunk))
    return frames


def test_fuzzed_frames_get_typed_answers(broker: BrokerProcess) -> None:
    witness = socket.socket(socket.AF_UNIX)
    witness.connect(broker.socket)
    witness.settimeout(10)
    wbuf = FrameBuffer()
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(frame=st.one_of(calls, garbage, mutated))
    def check(frame: bytes) -> None:
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(broker.socket)
        conn.settimeout(10)
        try:
            for reply_frame in exchange(conn, frame, FrameBuffer())[:-1]:
                reply = decode_reply(reply_frame)
                kind = reply.error or "reply"
                assert reply.error is None or reply.error in KNOWN_ERRORS, reply.error
                seen[kind] = seen.get(kind, 0) + 1
        finally:
            conn.close()
        # Another connection is undisturbed.
        assert any(b'"global"' in f for f in exchange(witness, encode_call(
            "io.linkbroker.WhoAmI")[:-1], wbuf))
        assert broker.proc is not None and broker.proc.poll() is None

    try:
        check()
    finally:
        witness.close()
        # Links the fuzzer may have made (names with the lbfz prefix) are removed.
        with broker.client() as gz:
            for link in gz.list_links():
                if link.name.startswith("lbfz"):
                    gz.delete_link(link.name, link.zone)
    print(f"\nfuzz: {EXAMPLES} examples; answers by kind: {dict(sorted(seen.items()))}")
    assert seen, "the fuzzer got no answers at all"


def test_every_method_is_in_the_table() -> None:
    described = [line.split()[1].split("(")[0] for line in
                 (ROOT / "broker/io.linkbroker.varlink").read_text().splitlines()
                 if line.startswith("method ")]
    assert sorted(described) == sorted(METHODS)


