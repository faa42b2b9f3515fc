"""linkbroker-cni's command line for people: `--help` and `--version` when no runtime is
calling (CNI_COMMAND unset), and the parser its man page and completions are made from.

A runtime never passes arguments (the CNI specification hands everything over in CNI_*
variables and the network configuration on stdin), so this module, and argparse with it, is
imported only when a person runs the plugin by hand: the exec path stays lean.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["build_parser", "main"]

DESCRIPTION = (
    "The linkbroker CNI plugin. A container runtime (podman, containerd, a Kubernetes node) "
    "execs it with CNI_COMMAND set and the network configuration on stdin; it asks "
    "linkbrokerd, through its Varlink socket, to boot the container's network namespace as a "
    "zone and to make the veth that joins it to a bridge of the global zone, then puts the "
    "addresses the IPAM plugin hands out on the container's end through the broker."
)

EPILOG = """\
environment (set by the runtime):
  CNI_COMMAND      ADD, DEL, CHECK, GC, STATUS or VERSION
  CNI_CONTAINERID  the container's ID; the zone is named after it
  CNI_NETNS        the container's network namespace (/run/netns/NAME or /proc/PID/ns/net)
  CNI_IFNAME       the container's end of the veth (eth0 usually)
  CNI_PATH         where the IPAM plugin is looked for

network configuration (stdin, JSON):
  {"cniVersion": "1.0.0", "name": "lbnet", "type": "linkbroker-cni",
   "socket": "/run/linkbroker/broker.sock", "bridge": "lbcni0", "mtu": 1500,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.51.100.0/24"}]]}}

output: the CNI result (ADD) or the specification's error object on stdout; exit status 0
on success, 1 with an error object otherwise. Error codes 100 and up are the plugin's own
(docs/cni.md).

example, by hand:
  echo '{"cniVersion":"1.0.0","name":"lbnet","type":"linkbroker-cni","bridge":"lbcni0"}' |
    CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/c1 CNI_IFNAME=eth0 \\
    CNI_PATH=/usr/lib/cni linkbroker-cni
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkbroker-cni", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true",
                        help="print the plugin's version and the CNI versions it speaks")
    return parser


def main(argv: list[str]) -> int:
    """What a person running the plugin by hand gets: help, the version, or a usage error."""
    from clients.cni._spec import SUPPORTED_VERSIONS

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from broker._version import version

        print(f"linkbroker-cni {version()} (CNI {', '.join(SUPPORTED_VERSIONS)})")
        return 0
    parser.print_usage()
    print("linkbroker-cni: CNI_COMMAND is not set: a container runtime runs this plugin; "
          "see linkbroker-cni --help", file=sys.stderr)
    return 2
