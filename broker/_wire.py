"""Varlink framing and encoding with no I/O, shared by the server, the client and the agent.

A message is one JSON object followed by one NUL byte. `FrameBuffer` turns received bytes into
whole frames and refuses to hold more than the frame limit; the encoders build reply and call
frames directly from msgspec structs, so a reply's bytes are made once, without a dict between.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from broker._errors import InvalidParameter, LinkbrokerError, RemoteError

__all__ = [
    "MAX_FRAME",
    "Call",
    "FrameBuffer",
    "FrameTooLarge",
    "Reply",
    "decode_call",
    "decode_parameters",
    "decode_reply",
    "encode_call",
    "encode_error",
    "encode_reply",
]

MAX_FRAME = 1 << 20
_T = TypeVar("_T")


class FrameTooLarge(Exception):
    """The peer sent more than MAX_FRAME bytes without a NUL: its connection is closed."""


class Call(msgspec.Struct, omit_defaults=True):
    method: str
    parameters: msgspec.Raw = msgspec.Raw(b"null")
    oneway: bool = False
    more: bool = False
    upgrade: bool = False


class Reply(msgspec.Struct, omit_defaults=True):
    parameters: dict[str, Any] | None = None
    continues: bool = False
    error: str | None = None


_call_decoder = msgspec.json.Decoder(Call)
_reply_decoder = msgspec.json.Decoder(Reply)
_encoder = msgspec.json.Encoder()
_EMPTY = msgspec.Raw(b"{}")
_NULL = msgspec.Raw(b"null")


class FrameBuffer:
    def __init__(self, limit: int = MAX_FRAME) -> None:
        self.limit = limit
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet ended."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        if data and not self._buf and data.find(b"\0") == len(data) - 1:
            # One whole call in one read, the usual case: no copy through the buffer.
            if len(data) - 1 > self.limit:
                raise FrameTooLarge(len(data) - 1)
            return [data[:-1]]
        self._buf += data
        frames: list[bytes] = []
        start = 0
        while (end := self._buf.find(b"\0", start)) >= 0:
            if end - start > self.limit:
                raise FrameTooLarge(end - start)
            frames.append(bytes(self._buf[start:end]))
            start = end + 1
        del self._buf[:start]
        if len(self._buf) > self.limit:
            raise FrameTooLarge(len(self._buf))
        return frames


def decode_call(frame: bytes) -> Call:
    """A call frame, or InvalidParameter naming what is wrong with it."""
    try:
        return _call_decoder.decode(frame)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(_parameter_of(exc, "")) from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # not JSON, or not UTF-8
        raise InvalidParameter("") from None


_AT = re.compile(r" - at `\$\.?(.*)`$")
_FIELD = re.compile(r"field `([^`]*)`")


def _parameter_of(exc: msgspec.ValidationError, prefix: str) -> str:
    """The dotted name of the parameter msgspec complained about (`link.mtu`)."""
    text = str(exc)
    path = ""
    if (m := _AT.search(text)) is not None:
        path = re.sub(r"\[(\d+)\]", r".\1", m.group(1))
        text = text[: m.start()]
    if (f := _FIELD.search(text)) is not None:
        path = f"{path}.{f.group(1)}" if path else f.group(1)
    if prefix:
        path = path.removeprefix(prefix + ".") if path.startswith(prefix + ".") else path
    return path


def decode_parameters(raw: msgspec.Raw | None, type_: type[_T]) -> _T:
    """Decode parameters (absent or null meaning none) into the method's struct."""
    if raw is None or raw == _NULL:
        raw = _EMPTY
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(_parameter_of(exc, "") or "parameters") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidParameter("parameters") from None


def encode_reply(parameters: msgspec.Struct | msgspec.Raw | dict[str, Any] | None,
                 continues: bool = False) -> bytes:
    body = b"{}" if parameters is None else _encoder.encode(parameters)
    tail = b',"continues":true}\0' if continues else b"}\0"
    return b'{"parameters":' + body + tail


def encode_error(error: LinkbrokerError) -> bytes:
    name = error.error if isinstance(error, RemoteError) else error.wire_name()
    return _encoder.encode({"error": name, "parameters": error.parameters()}) + b"\0"


def encode_call(method: str, parameters: msgspec.Struct | dict[str, Any] | None = None, *,
                more: bool = False, oneway: bool = False) -> bytes:
    body: dict[str, Any] = {"method": method}
    if parameters is not None:
        body["parameters"] = parameters
    if more:
        body["more"] = True
    if oneway:
        body["oneway"] = True
    return _encoder.encode(body) + b"\0"


def decode_reply(frame: bytes) -> Reply:
    return _reply_decoder.decode(frame)
