"""broker._wire and broker._errors: Varlink framing and codec, with no socket.

The contract's wire rules: a message is JSON plus one NUL; a frame over the limit closes the
connection; malformed frames and missing or mistyped parameters give InvalidParameter naming
the parameter (dotted, as `link.mtu`); `parameters` absent or null both mean none; and every
error the broker raises reaches the client as the same class with the same parameters.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from broker import _errors
from broker._errors import (
    AddressExists,
    AddressNotFound,
    ContractError,
    ExpectedMore,
    HaltIncomplete,
    InterfaceNotFound,
    InvalidAddress,
    InvalidName,
    InvalidParameter,
    KernelError,
    LimitExceeded,
    LinkbrokerError,
    LinkExists,
    LinkNotFound,
    MethodNotFound,
    MethodNotImplemented,
    NotOwner,
    PermissionDenied,
    RemoteError,
    RouteExists,
    RouteNotFound,
    Unsupported,
    VarlinkError,
    ZoneExists,
    ZoneNotFound,
    ZoneNotRegistered,
    error_from_wire,
)
from broker._params import (
    CreateLinkParams,
    Empty,
    GetLinkParams,
    GetZoneParams,
    HaltZoneParams,
    ListLinksParams,
    SetLinkPropertiesParams,
)
from broker._types import Link, LinkReply
from broker._wire import (
    MAX_FRAME,
    FrameBuffer,
    FrameTooLarge,
    decode_call,
    decode_parameters,
    decode_reply,
    encode_call,
    encode_error,
    encode_reply,
)

VARLINK_FILE = Path(__file__).resolve().parents[2] / "broker" / "io.linkbroker.varlink"


# --- FrameBuffer --------------------------------------------------------------------------------


def test_the_contract_limit_is_one_mebibyte() -> None:
    assert MAX_FRAME == 1 << 20
    assert FrameBuffer().limit == MAX_FRAME


@pytest.mark.parametrize(
    ("chunks", "frames"),
    [
        ([b""], []),
        ([b"{}\0"], [b"{}"]),
        ([b"\0"], [b""]),  # an empty frame is a frame (decode_call refuses it later)
        ([b"a\0b\0c\0"], [b"a", b"b", b"c"]),
        ([b"a", b"b", b"\0"], [b"ab"]),
        ([b"a\0b", b"c\0"], [b"a", b"bc"]),
        ([b"a\0\0b\0"], [b"a", b"", b"b"]),
        ([b"partial"], []),
    ],
)
def test_frame_buffer_splits_on_nul(chunks: list[bytes], frames: list[bytes]) -> None:
    buf = FrameBuffer()
    got = [frame for chunk in chunks for frame in buf.feed(chunk)]
    assert got == frames


def test_frame_buffer_keeps_the_partial_frame() -> None:
    buf = FrameBuffer()
    assert buf.feed(b'{"method":') == []
    assert buf.feed(b'"x"}\0{"me') == [b'{"method":"x"}']
    assert buf.feed(b'thod":"y"}\0') == [b'{"method":"y"}']


@pytest.mark.parametrize(
    ("data", "too_large"),
    [
        (b"x" * 8 + b"\0", False),  # exactly at the limit
        (b"x" * 8, False),  # at the limit, NUL still to come
        (b"x" * 9 + b"\0", True),
        (b"x" * 9, True),  # no need to wait for the NUL to know
        (b"ok\0" + b"x" * 9 + b"\0", True),
        (b"x" * 8 + b"\0" + b"y" * 8 + b"\0", False),  # the limit is per frame, not per feed
    ],
)
def test_frame_limit(data: bytes, too_large: bool) -> None:
    buf = FrameBuffer(limit=8)
    if too_large:
        with pytest.raises(FrameTooLarge):
            buf.feed(data)
    else:
        buf.feed(data)


def test_an_endless_frame_is_refused_as_soon_as_it_passes_the_limit() -> None:
    """A peer trickling bytes without a NUL must not make the broker hold them all."""
    buf = FrameBuffer(limit=8)
    for _ in range(8):
        assert buf.feed(b"x") == []
    with pytest.raises(FrameTooLarge):
        buf.feed(b"x")


frame_bodies = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"")), max_size=8)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(frame_bodies, st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"")),
       st.lists(st.integers(0, 120), max_size=20))
@example([b"a", b"", b"bc"], b"tail", [1, 1, 2])
def test_frames_survive_any_chunking(frames: list[bytes], tail: bytes, cuts: list[int]) -> None:
    """Frames fed in arbitrary pieces come back whole, in order; a trailing partial stays."""
    data = b"".join(f + b"\0" for f in frames) + tail
    buf = FrameBuffer(limit=64)
    got = [frame for chunk in chunked(data, cuts) for frame in buf.feed(chunk)]
    assert got == frames
    assert buf.feed(b"\0") == [tail]


@given(st.lists(st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\0", b"")),
                min_size=1, max_size=6),
       st.lists(st.integers(0, 80), max_size=10))
def test_too_large_iff_some_frame_passes_the_limit(frames: list[bytes], cuts: list[int]) -> None:
    limit = 8
    data = b"".join(f + b"\0" for f in frames)
    buf = FrameBuffer(limit=limit)
    raised = False
    try:
        for chunk in chunked(data, cuts):
            buf.feed(chunk)
    except FrameTooLarge:
        raised = True
    assert raised == any(len(f) > limit for f in frames)


# --- decode_call --------------------------------------------------------------------------------


def test_decode_call_defaults() -> None:
    call = decode_call(b'{"method":"io.linkbroker.ListLinks"}')
    assert call.method == "io.linkbroker.ListLinks"
    assert (call.more, call.oneway, call.upgrade) == (False, False, False)
    assert bytes(call.parameters) == b"null"


def test_decode_call_flags_and_unknown_keys() -> None:
    """Varlink's call object may grow keys; an unknown one is not an error."""
    call = decode_call(b'{"method":"a.B","more":true,"oneway":true,"upgrade":true,"x":1}')
    assert (call.more, call.oneway, call.upgrade) == (True, True, True)


@pytest.mark.parametrize(
    ("frame", "parameter"),
    [
        # The frame as a whole is unusable: there is no parameter to name.
        (b"", ""),
        (b"{", ""),
        (b"not json", ""),
        (b"\xff\xfe", ""),
        (b'{"method":"a.B"} trailing', ""),
        (b"[]", ""),
        (b'"io.linkbroker.ListLinks"', ""),
        (b"null", ""),
        # A usable object with a wrong member: that member is named.
        (b"{}", "method"),
        (b'{"parameters":{}}', "method"),
        (b'{"method":5}', "method"),
        (b'{"method":null}', "method"),
        (b'{"method":["a.B"]}', "method"),
        (b'{"method":"a.B","more":"yes"}', "more"),
        (b'{"method":"a.B","oneway":1}', "oneway"),
        (b'{"method":"a.B","upgrade":null}', "upgrade"),
    ],
)
def test_decode_call_refusals_name_the_parameter(frame: bytes, parameter: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        decode_call(frame)
    assert exc.value == InvalidParameter(parameter)


# --- decode_parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b'{"method":"io.linkbroker.GetZone"}',
        b'{"method":"io.linkbroker.GetZone","parameters":null}',
        b'{"method":"io.linkbroker.GetZone", "parameters" : null }',
        b'{"method":"io.linkbroker.GetZone","parameters":{}}',
    ],
)
def test_parameters_absent_or_null_mean_none(frame: bytes) -> None:
    """Go's varlink client sends `"parameters": null`; both it and absence mean no parameters."""
    call = decode_call(frame)
    assert decode_parameters(call.parameters, GetZoneParams) == GetZoneParams()
    assert decode_parameters(call.parameters, Empty) == Empty()
    assert decode_parameters(call.parameters, ListLinksParams) == ListLinksParams()


def test_parameters_none_means_none() -> None:
    assert decode_parameters(None, GetZoneParams) == GetZoneParams()


def test_absent_parameters_still_need_the_required_ones() -> None:
    call = decode_call(b'{"method":"io.linkbroker.HaltZone"}')
    with pytest.raises(InvalidParameter) as exc:
        decode_parameters(call.parameters, HaltZoneParams)
    assert exc.value == InvalidParameter("name")


def test_a_link_is_named_by_name_or_id_and_the_handler_wants_one() -> None:
    """GetLink's `name` became optional when `id` was added (issue 14): both decode; the
    lookup (broker._rules.find_link_by) then wants exactly one of them."""
    assert decode_parameters(msgspec.Raw(b'{"id":7}'), GetLinkParams) == GetLinkParams(id=7)
    assert decode_parameters(None, GetLinkParams) == GetLinkParams()


def test_decode_parameters_uses_wire_names() -> None:
    p = decode_parameters(msgspec.Raw(b'{"zone":"red","class":"veth"}'), ListLinksParams)
    assert (p.zone, p.class_) == ("red", "veth")
    create = decode_parameters(
        msgspec.Raw(b'{"link":{"name":"v0","class":"veth","peer":"v1","mtu":9000}}'),
        CreateLinkParams,
    )
    assert (create.link.name, create.link.class_, create.link.peer, create.link.mtu) == (
        "v0", "veth", "v1", 9000)


def link_with(extra: str) -> str:
    """CreateLink parameters for a valid veth spec plus `extra` members."""
    return '{"link":{"name":"v0","class":"veth",' + extra + "}}"


@pytest.mark.parametrize(
    ("params", "type_", "parameter"),
    [
        # Missing, mistyped and unknown members, by their dotted wire names.
        ("{}", CreateLinkParams, "link"),
        ('{"link":5}', CreateLinkParams, "link"),
        ('{"link":null}', CreateLinkParams, "link"),
        ('{"link":{"class":"veth"}}', CreateLinkParams, "link.name"),
        ('{"link":{"name":"v0"}}', CreateLinkParams, "link.class"),
        (link_with('"mtu":"big"'), CreateLinkParams, "link.mtu"),
        (link_with('"mtu":1500.5'), CreateLinkParams, "link.mtu"),
        (link_with('"vni":true'), CreateLinkParams, "link.vni"),
        (link_with('"up":"yes"'), CreateLinkParams, "link.up"),
        (link_with('"mac":1'), CreateLinkParams, "link.mac"),
        ('{"link":{"name":"v0","class":"phys"}}', CreateLinkParams, "link.class"),
        ('{"link":{"name":"v0","class":"nonsense"}}', CreateLinkParams, "link.class"),
        (link_with('"colour":"red"'), CreateLinkParams, "link.colour"),
        ('{"link":{"name":"v0","class":"veth"},"extra":1}', CreateLinkParams, "extra"),
        ('{"name":5}', GetLinkParams, "name"),
        ('{"name":"x","zone":5}', GetLinkParams, "zone"),
        ('{"name":"x","bogus":true}', GetLinkParams, "bogus"),
        ('{"class":5}', ListLinksParams, "class"),
        ('{"class_":"veth"}', ListLinksParams, "class_"),  # the Python name is not a wire name
        ('{"name":"x","mtu":"9000"}', SetLinkPropertiesParams, "mtu"),
        ('{"name":"x","up":1}', SetLinkPropertiesParams, "up"),
        ('{"anything":1}', Empty, "anything"),
    ],
)
def test_decode_parameters_refusals_name_the_parameter(
    params: str, type_: type[Any], parameter: str
) -> None:
    with pytest.raises(InvalidParameter) as exc:
        decode_parameters(msgspec.Raw(params.encode()), type_)
    assert exc.value == InvalidParameter(parameter)


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    items: list[_Item]


def test_array_positions_are_dotted_too() -> None:
    with pytest.raises(InvalidParameter) as exc:
        decode_parameters(msgspec.Raw(b'{"items":[{"name":"a"},{"name":5}]}'), _Batch)
    assert exc.value == InvalidParameter("items.1.name")


def test_undecodable_raw_parameters_are_named_parameters() -> None:
    with pytest.raises(InvalidParameter) as exc:
        decode_parameters(msgspec.Raw(b"{"), GetZoneParams)
    assert exc.value == InvalidParameter("parameters")


@pytest.mark.parametrize("params", [b"5", b"[]", b'"x"', b"true"])
def test_non_object_parameters_are_named_parameters(params: bytes) -> None:
    """`{"method":"io.linkbroker.GetLink","parameters":5}` names no parameter at all: msgspec's
    message has no path, so _parameter_of returns "". The same function names undecodable
    parameters "parameters"; a client (and linkadm's message) should get that here too.
    """
    call = decode_call(b'{"method":"io.linkbroker.GetLink","parameters":' + params + b"}")
    with pytest.raises(InvalidParameter) as exc:
        decode_parameters(call.parameters, GetLinkParams)
    assert exc.value == InvalidParameter("parameters")


# --- replies and calls --------------------------------------------------------------------------


def test_encode_reply_shapes() -> None:
    assert encode_reply(None) == b'{"parameters":{}}\0'
    assert encode_reply({}) == b'{"parameters":{}}\0'
    assert encode_reply(Empty()) == b'{"parameters":{}}\0'
    assert encode_reply({"a": 1}, continues=True) == b'{"parameters":{"a":1},"continues":true}\0'


def test_encode_reply_round_trips_through_decode_reply() -> None:
    link = Link(id=7, name="v0", class_="veth", zone="red", owner="global", onloan=True,
                persistent=False, state="up", mtu=1500, peer=None)
    frame = encode_reply(LinkReply(link=link), continues=True)
    (body,) = FrameBuffer().feed(frame)
    reply = decode_reply(body)
    assert reply.error is None
    assert reply.continues is True
    assert reply.parameters is not None
    assert reply.parameters["link"]["class"] == "veth"  # the wire name, not class_
    assert "peer" not in reply.parameters["link"]  # absent optionals are omitted
    assert msgspec.convert(reply.parameters, LinkReply) == LinkReply(link=link)


@pytest.mark.parametrize(
    ("parameters", "more", "oneway"),
    [(None, False, False), ({}, False, False), ({"name": "x"}, True, False),
     (GetLinkParams(name="v0", zone="red"), False, True)],
)
def test_encode_call_round_trips_through_decode_call(
    parameters: Any, more: bool, oneway: bool
) -> None:
    frame = encode_call("io.linkbroker.GetLink", parameters, more=more, oneway=oneway)
    assert frame.endswith(b"\0") and frame.count(b"\0") == 1
    call = decode_call(frame[:-1])
    assert (call.method, call.more, call.oneway) == ("io.linkbroker.GetLink", more, oneway)
    expected = (None if parameters is None
                else msgspec.json.decode(msgspec.json.encode(parameters)))
    assert msgspec.json.decode(call.parameters) == expected


# --- errors on the wire -------------------------------------------------------------------------

EVERY_ERROR: list[LinkbrokerError] = [
    InterfaceNotFound("com.example.Nope"),
    MethodNotFound("io.linkbroker.Nope"),
    MethodNotImplemented("io.linkbroker.Later"),
    InvalidParameter("link.mtu"),
    InvalidParameter(""),
    ExpectedMore(),
    LinkNotFound("eth0"),
    LinkExists("eth0"),
    ZoneNotFound("red"),
    ZoneExists("red"),
    ZoneNotRegistered(4026531840),
    InvalidName("a/b", "a link name must not contain '/'"),
    PermissionDenied("BootZone", "zone.admin"),
    NotOwner("lent0", "global"),
    Unsupported("link class vxlan (this kernel lacks it)"),
    KernelError(17, "create v0: File exists"),
    LimitExceeded("event queue", 1024),
    HaltIncomplete("red", ["detach: EBUSY", "delete v0: ENODEV"]),
    HaltIncomplete("red", []),
    InvalidAddress("address", "198.51.100.1/33", "prefix too long"),
    AddressExists("198.51.100.1/24"),
    AddressNotFound("2001:db8::1/64"),
    RouteExists("0.0.0.0/0"),
    RouteNotFound("203.0.113.0/24"),
    LinkNotFound("ünï\u0000côdé"),  # any string survives, NUL included (JSON escapes it)
]


@pytest.mark.parametrize("error", EVERY_ERROR, ids=lambda e: type(e).__name__)
def test_every_error_round_trips(error: LinkbrokerError) -> None:
    frame = encode_error(error)
    (body,) = FrameBuffer().feed(frame)  # exactly one frame: the NUL ends it and only it
    reply = decode_reply(body)
    assert reply.error == error.wire_name()
    assert reply.continues is False
    back = error_from_wire(reply.error, reply.parameters)
    assert type(back) is type(error)
    assert back == error
    assert back.parameters() == error.parameters()


def test_every_error_class_is_covered() -> None:
    """A new error class must be added to EVERY_ERROR (and so proven to round-trip)."""
    leaves = {
        cls for name in _errors.__all__
        if isinstance(cls := getattr(_errors, name), type) and issubclass(cls, LinkbrokerError)
        and cls not in (LinkbrokerError, VarlinkError, ContractError, RemoteError)
    }
    assert leaves == {type(e) for e in EVERY_ERROR}


@pytest.mark.parametrize(
    ("error", "wire_name"),
    [
        (InterfaceNotFound("x"), "org.varlink.service.InterfaceNotFound"),
        (MethodNotFound("x"), "org.varlink.service.MethodNotFound"),
        (MethodNotImplemented("x"), "org.varlink.service.MethodNotImplemented"),
        (InvalidParameter("x"), "org.varlink.service.InvalidParameter"),
        (ExpectedMore(), "org.varlink.service.ExpectedMore"),
        (LinkNotFound("x"), "io.linkbroker.LinkNotFound"),
        (HaltIncomplete("x", []), "io.linkbroker.HaltIncomplete"),
    ],
)
def test_wire_names(error: LinkbrokerError, wire_name: str) -> None:
    assert error.wire_name() == wire_name


def test_interface_not_found_says_interface_on_the_wire() -> None:
    """The Varlink standard names the parameter `interface` (a ClassVar here, hence the alias)."""
    assert InterfaceNotFound("a.b").parameters() == {"interface": "a.b"}
    assert b'"parameters":{"interface":"a.b"}' in encode_error(InterfaceNotFound("a.b"))


def _varlink_errors() -> dict[str, list[str]]:
    text = VARLINK_FILE.read_text()
    found = re.findall(r"^error\s+(\w+)\s*\(([^)]*)\)", text, flags=re.MULTILINE)
    return {name: [p.split(":")[0].strip() for p in params.split(",") if p.strip()]
            for name, params in found}


def test_contract_errors_match_the_interface_file() -> None:
    """Every io.linkbroker error in the .varlink file is a class with exactly its parameters."""
    declared = _varlink_errors()
    classes: dict[str, Any] = {
        type(e).__name__: type(e) for e in EVERY_ERROR if isinstance(e, ContractError)}
    assert set(declared) == set(classes)
    for name, params in declared.items():
        assert [f.name for f in fields(classes[name])] == params, name


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("com.example.Oops", {"a": 1}, RemoteError("com.example.Oops", {"a": 1})),
        ("com.example.Oops", None, RemoteError("com.example.Oops", {})),
        # A known name with its parameters missing or unusable is kept whole, not guessed at.
        ("io.linkbroker.LinkNotFound", {}, RemoteError("io.linkbroker.LinkNotFound", {})),
        ("io.linkbroker.KernelError", {"errno": 1},
         RemoteError("io.linkbroker.KernelError", {"errno": 1})),
        ("io.linkbroker.LinkNotFound", None, RemoteError("io.linkbroker.LinkNotFound", {})),
        # Extra parameters (a newer broker) are ignored.
        ("io.linkbroker.LinkNotFound", {"name": "x", "hint": 1}, LinkNotFound("x")),
        ("org.varlink.service.ExpectedMore", None, ExpectedMore()),
        ("org.varlink.service.InterfaceNotFound", {"interface": "a.b"}, InterfaceNotFound("a.b")),
        # Only the full name counts.
        ("LinkNotFound", {"name": "x"}, RemoteError("LinkNotFound", {"name": "x"})),
        ("org.varlink.service.LinkNotFound", {"name": "x"},
         RemoteError("org.varlink.service.LinkNotFound", {"name": "x"})),
    ],
)
def test_error_from_wire(name: str, params: dict[str, Any] | None,
                         expected: LinkbrokerError) -> None:
    got = error_from_wire(name, params)
    assert type(got) is type(expected)
    assert got == expected


def test_remote_error_keeps_name_and_parameters() -> None:
    err = error_from_wire("com.example.Oops", {"a": [1, 2]})
    assert isinstance(err, RemoteError)
    assert err.parameters() == {"a": [1, 2]}
    assert "com.example.Oops" in repr(err)


def test_a_relayed_remote_error_keeps_its_name() -> None:
    """A RemoteError is "kept whole", but re-encoding it (a proxy relaying a reply it did not
    know) sends `.RemoteError` instead of the original name: wire_name() is a classmethod
    built from the class, not from `error`. No code relays one today.
    """
    err = RemoteError("com.example.Oops", {"a": 1})
    reply = decode_reply(encode_error(err)[:-1])
    assert reply.error == "com.example.Oops"
    assert error_from_wire(reply.error, reply.parameters) == err


def test_invalid_utf8_is_an_invalid_parameter() -> None:
    """Found by the fuzzer against the real broker: msgspec raises UnicodeDecodeError (not a
    DecodeError) for a frame that is not UTF-8, and it used to drop the connection."""
    with pytest.raises(InvalidParameter):
        decode_call(b'{"method": "io.linkbroker.WhoAmI\xca"}')
    with pytest.raises(InvalidParameter):
        decode_parameters(msgspec.Raw(b'{"name": "\xca"}'), GetLinkParams)
