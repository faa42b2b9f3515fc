"""The one exception tree of linkbroker, each leaf mapped to exactly one Varlink error.

    LinkbrokerError
    ├── VarlinkError                 org.varlink.service.* (protocol-level)
    │   ├── InterfaceNotFound
    │   ├── MethodNotFound
    │   ├── MethodNotImplemented
    │   ├── InvalidParameter
    │   └── ExpectedMore
    └── ContractError                io.linkbroker.* (the contract's own errors)
        ├── LinkNotFound, LinkExists, ZoneNotFound, ZoneExists, ZoneNotRegistered
        ├── InvalidName, PermissionDenied, NotOwner, Unsupported
        ├── KernelError, LimitExceeded
        ├── HaltIncomplete           (added: best-effort teardown reports every failure)
        └── InvalidAddress, AddressExists, AddressNotFound, RouteExists, RouteNotFound
                                     (added with the address and route methods)

The broker raises these; the server turns them into error replies with `to_wire`; the client
turns error replies back into the same classes with `from_wire`. The netlink shell and the
zone openers (Docker, /proc) translate foreign exceptions at their boundary. SQLite's are not
translated: a failing store is the broker's fault, not the caller's, so a sqlite3 error
reaches the server's catch-all, which logs it and closes that one connection; nothing but
these classes ever reaches the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar

__all__ = [
    "AddressExists",
    "AddressNotFound",
    "ContractError",
    "ExpectedMore",
    "HaltIncomplete",
    "InterfaceNotFound",
    "InvalidAddress",
    "InvalidName",
    "InvalidParameter",
    "KernelError",
    "LimitExceeded",
    "LinkExists",
    "LinkNotFound",
    "LinkbrokerError",
    "MethodNotFound",
    "MethodNotImplemented",
    "NotOwner",
    "PermissionDenied",
    "RemoteError",
    "RouteExists",
    "RouteNotFound",
    "Unsupported",
    "VarlinkError",
    "ZoneExists",
    "ZoneNotFound",
    "ZoneNotRegistered",
    "error_from_wire",
]


class LinkbrokerError(Exception):
    """Root of every error linkbroker raises on purpose."""

    interface: ClassVar[str] = ""

    @classmethod
    def wire_name(cls) -> str:
        return f"{cls.interface}.{cls.__name__}"

    def parameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} if is_dataclass(self) else {}

    def __str__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({params})"


class VarlinkError(LinkbrokerError):
    interface = "org.varlink.service"


class ContractError(LinkbrokerError):
    interface = "io.linkbroker"


@dataclass(eq=True)
class InterfaceNotFound(VarlinkError):
    interface_name: str

    def parameters(self) -> dict[str, Any]:
        return {"interface": self.interface_name}


@dataclass(eq=True)
class MethodNotFound(VarlinkError):
    method: str


@dataclass(eq=True)
class MethodNotImplemented(VarlinkError):
    method: str


@dataclass(eq=True)
class InvalidParameter(VarlinkError):
    parameter: str


@dataclass(eq=True)
class ExpectedMore(VarlinkError):
    pass


@dataclass(eq=True)
class LinkNotFound(ContractError):
    name: str


@dataclass(eq=True)
class LinkExists(ContractError):
    name: str


@dataclass(eq=True)
class ZoneNotFound(ContractError):
    name: str


@dataclass(eq=True)
class ZoneExists(ContractError):
    name: str


@dataclass(eq=True)
class ZoneNotRegistered(ContractError):
    netns_inode: int


@dataclass(eq=True)
class InvalidName(ContractError):
    name: str
    reason: str


@dataclass(eq=True)
class PermissionDenied(ContractError):
    method: str
    authorization: str


@dataclass(eq=True)
class NotOwner(ContractError):
    name: str
    owner: str


@dataclass(eq=True)
class Unsupported(ContractError):
    what: str


@dataclass(eq=True)
class KernelError(ContractError):
    errno: int
    message: str


@dataclass(eq=True)
class LimitExceeded(ContractError):
    what: str
    limit: int


@dataclass(eq=True)
class HaltIncomplete(ContractError):
    name: str
    errors: list[str]


@dataclass(eq=True)
class InvalidAddress(ContractError):
    """An address, prefix or gateway that is not usable: `parameter` names the field."""

    parameter: str
    address: str
    reason: str


@dataclass(eq=True)
class AddressExists(ContractError):
    address: str


@dataclass(eq=True)
class AddressNotFound(ContractError):
    address: str


@dataclass(eq=True)
class RouteExists(ContractError):
    destination: str


@dataclass(eq=True)
class RouteNotFound(ContractError):
    destination: str


@dataclass(eq=True)
class RemoteError(LinkbrokerError):
    """An error reply the client does not know: kept whole rather than guessed at."""

    error: str
    params: dict[str, Any]

    def parameters(self) -> dict[str, Any]:
        return dict(self.params)


_BY_WIRE_NAME: dict[str, type[LinkbrokerError]] = {
    cls.wire_name(): cls
    for cls in (
        InterfaceNotFound, MethodNotFound, MethodNotImplemented, InvalidParameter,
        ExpectedMore, LinkNotFound, LinkExists, ZoneNotFound, ZoneExists, ZoneNotRegistered,
        InvalidName, PermissionDenied, NotOwner, Unsupported, KernelError, LimitExceeded,
        HaltIncomplete, InvalidAddress, AddressExists, AddressNotFound, RouteExists,
        RouteNotFound,
    )
}


def error_from_wire(name: str, params: dict[str, Any] | None) -> LinkbrokerError:
    """Rebuild the typed error from an error reply, or a RemoteError when it is unknown."""
    params = params or {}
    cls = _BY_WIRE_NAME.get(name)
    if cls is None:
        return RemoteError(name, params)
    if cls is InterfaceNotFound:
        return InterfaceNotFound(str(params.get("interface", "")))
    try:
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        return cls(**{n: params[n] for n in names})
    except (KeyError, TypeError):
        return RemoteError(name, params)
