#!/usr/bin/env bash
# Makes the topology pictures in the docs (docs/topology.png, docs/topology-red.png and
# docs/topology.txt) with `linkadm show-topology`, from a real broker and real namespaces.
#
# The lab's shape (compose.yaml: zones red and blue, each with an eth0 whose host end is a port
# of the global zone's bridge lbbr0) plus the README tour's cross-zone veth vred/vblue, a bridge
# of red's own with a port, a macvlan over red's eth0, a tap lent to blue, and an uplink blue
# made itself onto lbbr0 (the policy lets it; the broker names the host end lbu<random>).
#
# Nothing touches the host's own links: the broker's global zone is a namespace of its own
# (lbpic-host), and everything lives in namespaces this script makes and deletes. As root:
#   bash scripts/topology-picture.sh [OUTDIR]        (default: docs)
set -euo pipefail
exec </dev/null
cd "$(dirname "$0")/.."
out=${1:-docs}
host=lbpic-host red=lbpic-red blue=lbpic-blue
for ns in "$host" "$red" "$blue"; do
    if ip netns list | grep -qw "^$ns"; then echo "netns $ns exists: not mine, stopping" >&2; exit 1; fi
done
work=$(mktemp -d)
broker=""
cleanup() {
    [[ -n "$broker" ]] && kill -TERM "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
    for ns in "$red" "$blue" "$host"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
for ns in "$host" "$red" "$blue"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

printf '[bridges]\nattachable = { lbbr0 = ["red", "blue"] }\n' > "$work/policy.toml"
export LINKBROKER_SOCKET=$work/broker.sock
ip netns exec "$host" python3 -m broker._daemon --socket "$LINKBROKER_SOCKET" \
    --state-dir "$work/state" --policy "$work/policy.toml" --log-level WARNING \
    2>"$work/broker.log" &
broker=$!
gz() { ip netns exec "$host" python3 -m clients.linkadm "$@"; }
zl() { local ns=$1; shift; ip netns exec "$ns" python3 -m clients.linkadm "$@"; }
for _ in $(seq 100); do gz whoami >/dev/null 2>&1 && break; sleep 0.1; done

gz boot-zone red --netns "$red"
gz boot-zone blue --netns "$blue"
gz create-link lbbr0 --class bridge --up
# As the lab's agent does: eth0 in each zone, its host end a port of lbbr0.
gz create-link lbred --class veth --peer eth0 --peer-zone red --master lbbr0 --up
gz create-link lbblue --class veth --peer eth0 --peer-zone blue --master lbbr0 --up
# The README tour: a veth straight from red to blue, kept across reboots of the zones.
gz create-link vred --class veth --peer vblue --zone red --peer-zone blue --up --persistent
# A tap the global zone lends to blue.
gz create-link tap0 --class tap
gz assign-link tap0 blue
# What the zones make themselves.
zl "$red" create-link br0 --class bridge --up
zl "$red" create-link va --class veth --peer vb --master br0
zl "$red" create-link mv0 --class macvlan --parent eth0 --mode bridge --up
zl "$blue" create-link net1 --class veth --uplink lbbr0 --up
# The zones bring up the ends they were given (vb and tap0 stay down: drawn grey).
zl "$red" set-linkprop eth0 --up
zl "$blue" set-linkprop eth0 --up
zl "$blue" set-linkprop vblue --up

mkdir -p "$out"
gz show-topology -o "$out/topology.png"
zl "$red" show-topology -o "$out/topology-red.png"
{
    gz show-topology
    echo
    zl "$red" show-topology
} > "$out/topology.txt"
cat "$out/topology.txt"
echo "wrote $out/topology.png $out/topology-red.png $out/topology.txt"
