"""The smallest io.linkbroker client that does the plugin's job, on the standard library only.

broker.client is the typed client, but it brings msgspec and the contract's structs: ~10 ms
of imports that an exec'd-per-call plugin pays on every ADD and DEL. The plugin needs only
calls, replies as dicts and the error's name, so this speaks Varlink (NUL-framed JSON) by hand.
"""

from __future__ import annotations

import _socket  # `socket` builds its enums at import: ~5 ms the plugin need not pay

from clients.cni import _codec as json  # `json` imports `re`: ~9 ms

TYPE_CHECKING = False  # `typing` costs milliseconds to import: for the checker only
if TYPE_CHECKING:
    from typing import Any

__all__ = ["BrokerError", "Connection", "Unreachable"]

_PREFIX = "io.linkbroker."


class Unreachable(Exception):
    """Nothing was answered: no socket, nobody listening, or the connection broke mid-call.
    A write may or may not have happened when the connection broke."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"linkbroker at {path} is not reachable: {reason}")
        self.path = path
        self.reason = reason


class BrokerError(Exception):
    """An error reply: `name` without the interface prefix (`LinkNotFound`) and its
    parameters."""

    def __init__(self, name: str, parameters: dict[str, Any]) -> None:
        short = name.rsplit(".", 1)[-1]
        super().__init__(f"{short}({json.dumps(parameters)})")
        self.name = short
        self.parameters = parameters


class Connection:
    """One connection; calls are sent and answered one at a time."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.path = path
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._buf = b""
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise Unreachable(path, exc.strerror or str(exc)) from None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def call(self, method: str, **parameters: Any) -> dict[str, Any]:
        """The reply's parameters; BrokerError for an error reply. None values are left out."""
        params = {k: v for k, v in parameters.items() if v is not None}
        frame = json.dumps({"method": _PREFIX + method, "parameters": params}).encode()
        try:
            self._sock.sendall(frame + b"\0")
            while (end := self._buf.find(b"\0")) < 0:
                data = self._sock.recv(1 << 16)
                if not data:
                    raise Unreachable(self.path, "the broker closed the connection")
                self._buf += data
        except OSError as exc:
            raise Unreachable(self.path, exc.strerror or str(exc)) from None
        raw, self._buf = self._buf[:end], self._buf[end + 1:]
        try:
            reply = json.loads(raw)
        except ValueError:
            raise Unreachable(self.path, "the reply is not Varlink") from None
        if not isinstance(reply, dict):
            raise Unreachable(self.path, "the reply is not Varlink")
        result = reply.get("parameters") or {}
        if reply.get("error") is not None:
            raise BrokerError(str(reply["error"]), result)
        assert isinstance(result, dict)
        return result
