#!/usr/bin/env bash
# Installs linkbroker and what it needs on a Debian machine, as root. Idempotent.
#   bash scripts/install.sh            the daemon, linkadm and the agent
#   bash scripts/install.sh test       also the test and benchmark tools
set -euo pipefail
exec </dev/null
cd "$(dirname "$0")/.."
say() { printf '[install] %s\n' "$*"; }

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# nft: the host-side rules of the `protection` link property (broker/_nospoof.py).
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# Test mode: podman (CNI backend), the reference CNI plugins (host-local, bridge) and a static
# busybox for the image, which linkbroker-cni's tests and benchmark use (docs/cni.md).
if [[ "${1:-}" == "test" ]]; then
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    [[ -x /usr/lib/cni/host-local ]] || missing+=(containernetworking-plugins)
    [[ -x /bin/busybox ]] || missing+=(busybox-static)
    # runc beside crun: crun refuses a hybrid cgroup layout with a controller on cgroup2,
    # as some VMs boot; tests/podman/runtime.py picks runc there.
    command -v runc >/dev/null 2>&1 || missing+=(runc)
fi
# Test mode: Graphviz's dot, which linkadm show-topology's svg/png output and its tests use.
if [[ "${1:-}" == "test" ]]; then command -v dot >/dev/null 2>&1 || missing+=(graphviz); fi
# Test mode: systemd-analyze and systemd-socket-activate (systemd need not be PID 1), man and
# groff to render the pages, curl to read the metrics socket.
if [[ "${1:-}" == "test" ]]; then
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    command -v man >/dev/null 2>&1 || missing+=(man-db)
    command -v groff >/dev/null 2>&1 || command -v nroff >/dev/null 2>&1 || missing+=(groff-base)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
extras="[man]"
[[ "${1:-}" == "test" ]] && extras="[test,bench,man]"
say "pip install -e .${extras}"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".${extras}"

# Man pages (section 8) and bash/zsh completions, generated from the argparse parsers, where
# man, bash-completion and zsh look for local additions.
share=/usr/local/share
say "man pages and completions under $share"
python3 contrib/manpages.py "$share" >/dev/null
command -v mandb >/dev/null 2>&1 && mandb -q "$share/man" 2>/dev/null || true
# systemd units, with the real path of the programs; installed, not enabled:
#   systemctl enable --now linkbroker.socket linkbroker.service
bindir="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
units=/usr/local/lib/systemd/system
mkdir -p "$units"
for unit in contrib/systemd/*; do
    sed "s|@BINDIR@|$bindir|g" "$unit" > "$units/$(basename "$unit")"
done
[[ -d /run/systemd/system ]] && systemctl daemon-reload || true
# linkbroker-cni where CNI runtimes look for plugins. A wrapper rather than the console
# script: exec'd for every ADD and DEL, it runs python3 -IS (no site packages to scan: ~30 ms
# less per call) with the source directory on its path; it needs only the standard library.
cni_python=/usr/bin/python3
[[ -x $cni_python ]] || cni_python="$(command -v python3)"
for dir in /usr/lib/cni /opt/cni/bin; do
    mkdir -p "$dir"
    printf '#!%s -IS\n# linkbroker-cni (docs/cni.md), installed by scripts/install.sh\nimport sys\nsys.path.insert(0, %s)\nfrom clients.cni.plugin import main\nsys.exit(main())\n' \
        "$cni_python" "'$PWD'" > "$dir/linkbroker-cni.new"
    chmod 0755 "$dir/linkbroker-cni.new"
    mv -f "$dir/linkbroker-cni.new" "$dir/linkbroker-cni"
done
say "done: $(command -v linkbrokerd) $(command -v linkadm); units in $units"
