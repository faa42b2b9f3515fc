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
# Test mode: Graphviz's dot, which linkadm show-topology's svg/png output and its tests use.
if [[ "${1:-}" == "test" ]]; then command -v dot >/dev/null 2>&1 || missing+=(graphviz); fi
if [[ ${#missing[@]} -gt 0 ]]; then
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
extras=""
[[ "${1:-}" == "test" ]] && extras="[test,bench]"
say "pip install -e .${extras}"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".${extras}"
say "done: $(command -v linkbrokerd) $(command -v linkadm)"
