"""org.varlink.service: what every Varlink service answers about itself (GetInfo and
GetInterfaceDescription), served by the server before any zone lookup, so a client in any
namespace can learn what it is talking to."""

from __future__ import annotations

from importlib import resources

import msgspec

from broker._dispatch import INTERFACE
from broker._errors import InterfaceNotFound, MethodNotFound
from broker._wire import Call, decode_parameters, encode_reply

__all__ = ["SERVICE", "interface_description", "service_call"]

SERVICE = "org.varlink.service"
_SERVICE_DESCRIPTION = """\
# The Varlink Service Interface is provided by every varlink service.
interface org.varlink.service

method GetInfo() -> (
  vendor: string,
  product: string,
  version: string,
  url: string,
  interfaces: []string
)

method GetInterfaceDescription(interface: string) -> (description: string)

error InterfaceNotFound (interface: string)
error MethodNotFound (method: string)
error MethodNotImplemented (method: string)
error InvalidParameter (parameter: string)
error PermissionDenied ()
error ExpectedMore ()
"""


def interface_description() -> str:
    return resources.files("broker").joinpath("io.linkbroker.varlink").read_text()


class _InterfaceParams(msgspec.Struct, forbid_unknown_fields=True):
    interface: str


class _NoParams(msgspec.Struct, forbid_unknown_fields=True):
    pass


def service_call(name: str, call: Call, *, version: str, description: str) -> bytes:
    """The reply to org.varlink.service.NAME; `description` is io.linkbroker's, read once."""
    if name == "GetInfo":
        decode_parameters(call.parameters, _NoParams)
        return encode_reply({
            "vendor": "linkbroker", "product": "linkbrokerd", "version": version,
            "url": "https://github.com/linkbroker/linkbroker",
            "interfaces": [SERVICE, INTERFACE],
        })
    if name == "GetInterfaceDescription":
        p = decode_parameters(call.parameters, _InterfaceParams)
        if p.interface == INTERFACE:
            return encode_reply({"description": description})
        if p.interface == SERVICE:
            return encode_reply({"description": _SERVICE_DESCRIPTION})
        raise InterfaceNotFound(p.interface)
    raise MethodNotFound(call.method)
