#!/usr/bin/env bash
# Bring up (or take down) the Docker engine that the linkbroker lab runs on.
#
#   .ci/docker-engine.sh start   install docker.io, docker-compose and debootstrap from
#                                Debian if missing; start dockerd unless one already answers
#                                and prepare the host paths the lab binds (see prepare)
#   .ci/docker-engine.sh prepare only the host paths: /run/linkbroker and /run/netns as shared
#                                mount points (compose binds them rshared), and
#                                /var/lib/linkbroker-lab for the broker's state
#   .ci/docker-engine.sh stop    stop dockerd, but only if `start` started it
#   .ci/docker-engine.sh status  say whether an engine answers and who started it
#
# The engine is started with the network left alone: no docker0 bridge (--bridge=none), no
# iptables/ip6tables rules, no ip_forward flip, and the vfs storage driver (works on any
# filesystem, no overlay mounts). Lab containers use network_mode none/host only.
#
# Files under /run/linkbroker-lab/:
#   dockerd.pid      written by dockerd (--pidfile)
#   dockerd.log      dockerd's stdout+stderr
#   dockerd.started  pid of the dockerd this script started; `stop` acts only when it exists
#
# Idempotent; never reads stdin; safe under `set -euo pipefail` in CI.
set -euo pipefail
exec </dev/null

LAB_RUN_DIR=${LINKBROKER_LAB_RUN_DIR:-/run/linkbroker-lab}
PIDFILE="$LAB_RUN_DIR/dockerd.pid"
LOGFILE="$LAB_RUN_DIR/dockerd.log"
MARKER="$LAB_RUN_DIR/dockerd.started"
START_TIMEOUT=${LINKBROKER_DOCKERD_START_TIMEOUT:-90}
STOP_TIMEOUT=${LINKBROKER_DOCKERD_STOP_TIMEOUT:-60}

say() { printf '[docker-engine] %s\n' "$*"; }
die() { printf '[docker-engine] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    die "must run as root"
fi

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

# Install what is missing. apt must not start the packaged docker service: its init script
# would bring up dockerd with the default docker0 bridge and iptables rules.
install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "packages present: docker.io docker-compose debootstrap"
        return
    fi
    say "installing: ${missing[*]}"
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# linkbroker lab: keep apt from starting services\nexit 101\n' \
            >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local t0=$SECONDS rc=0
    export DEBIAN_FRONTEND=noninteractive
    {
        apt-get update -qq &&
            apt-get install -y -qq --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                "${missing[@]}"
    } || rc=$?
    if [[ $made_policy -eq 1 ]]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    [[ $rc -eq 0 ]] || die "apt-get install ${missing[*]} failed (exit $rc)"
    say "installed in $((SECONDS - t0))s: ${missing[*]}"
}

# The flags we want, each kept only if this dockerd knows it.
dockerd_flags() {
    local help
    help=$(dockerd --help 2>&1 || true)
    local -a want=(
        --storage-driver=vfs
        --bridge=none
        --iptables=false
        --ip6tables=false
        --ip-forward=false
        --ip-masq=false
        --userland-proxy=false
        "--pidfile=$PIDFILE"
    )
    local flag name
    for flag in "${want[@]}"; do
        name=${flag%%=*}
        if grep -qE -- "(^|[ ,])${name}([ =,]|$)" <<<"$help"; then
            printf '%s\n' "$flag"
        else
            say "dockerd has no ${name}; leaving it out" >&2
        fi
    done
}

# A pid file's pid if that process is alive and is a dockerd.
live_dockerd_pid() {
    local file=$1 pid exe
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 1
    [[ -d /proc/$pid ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [[ $(basename -- "${exe% (deleted)}") == dockerd ]] || return 1
    printf '%s\n' "$pid"
}

# Docker refuses an rshared bind whose source is not on a shared mount, and / here is
# private (no systemd). Make each path a shared mount point of its own, as `ip netns add`
# does for /run/netns; its contents stay what they were.
prepare_host() {
    local dir
    mkdir -p /var/lib/linkbroker-lab "$LAB_RUN_DIR"
    for dir in /run/linkbroker /run/netns; do
        mkdir -p "$dir"
        if [[ $(findmnt -n -o TARGET --mountpoint "$dir" 2>/dev/null || true) != "$dir" ]]; then
            mount --bind "$dir" "$dir"
            # /run/netns stays a mount point (as `ip netns add` leaves it); ours is undone
            # by `stop`.
            [[ $dir == /run/linkbroker ]] && touch "$LAB_RUN_DIR/linkbroker.bind"
        fi
        if [[ $(findmnt -n -o PROPAGATION --mountpoint "$dir" | head -n 1) != shared ]]; then
            mount --make-shared "$dir"
        fi
    done
    say "host paths ready: /run/linkbroker, /run/netns (shared mounts), /var/lib/linkbroker-lab"
}

start_engine() {
    install_packages
    prepare_host
    mkdir -p "$LAB_RUN_DIR"
    if engine_answers; then
        if live_dockerd_pid "$MARKER" >/dev/null; then
            say "dockerd already running (started by this script, pid $(cat "$MARKER"))"
        else
            say "a Docker engine already answers; using it (not ours, stop will leave it)"
        fi
        print_versions
        return
    fi
    if pid=$(live_dockerd_pid "$PIDFILE"); then
        die "dockerd pid $pid is running but 'docker info' fails; see $LOGFILE"
    fi
    rm -f "$MARKER"
    local -a flags
    mapfile -t flags < <(dockerd_flags)
    say "starting: dockerd ${flags[*]}"
    say "log: $LOGFILE"
    local t0=$SECONDS
    # setsid: its own session, so the caller's job control and signals do not reach it.
    setsid dockerd "${flags[@]}" >>"$LOGFILE" 2>&1 </dev/null &
    local pid=$!
    printf '%s\n' "$pid" >"$MARKER"
    say "dockerd pid $pid; waiting up to ${START_TIMEOUT}s for 'docker info'"
    while ! engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$MARKER"
            say "dockerd exited; last lines of $LOGFILE:"
            tail -n 40 "$LOGFILE" >&2 || true
            die "dockerd did not start"
        fi
        if ((SECONDS - t0 >= START_TIMEOUT)); then
            say "no answer after ${START_TIMEOUT}s; last lines of $LOGFILE:"
            tail -n 40 "$LOGFILE" >&2 || true
            die "dockerd (pid $pid) did not answer 'docker info' in ${START_TIMEOUT}s (left running)"
        fi
        sleep 1
    done
    say "dockerd answers after $((SECONDS - t0))s"
    print_versions
}

print_versions() {
    docker version --format 'client {{.Client.Version}} / server {{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null |
        sed 's/^/[docker-engine] /' || true
    docker info --format 'storage driver {{.Driver}}, cgroup {{.CgroupDriver}} v{{.CgroupVersion}}' 2>/dev/null |
        sed 's/^/[docker-engine] /' || true
    if command -v docker-compose >/dev/null 2>&1; then
        say "$(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
    fi
}

undo_host() {
    if [[ -e $LAB_RUN_DIR/linkbroker.bind ]]; then
        if umount /run/linkbroker 2>/dev/null; then
            say "removed the /run/linkbroker bind mount made by prepare"
        else
            say "left the /run/linkbroker bind mount (busy)"
        fi
        rm -f "$LAB_RUN_DIR/linkbroker.bind"
    fi
}

stop_engine() {
    undo_host
    local pid
    if ! pid=$(live_dockerd_pid "$MARKER"); then
        if [[ -e $MARKER ]]; then
            say "dockerd recorded in $MARKER is gone; cleaning up"
            rm -f "$MARKER"
        elif engine_answers; then
            say "the running Docker engine was not started by this script; leaving it alone"
        else
            say "no Docker engine running; nothing to stop"
        fi
        return
    fi
    say "stopping dockerd pid $pid (SIGTERM)"
    kill -TERM "$pid"
    local t0=$SECONDS
    while [[ -d /proc/$pid ]]; do
        if ((SECONDS - t0 >= STOP_TIMEOUT)); then
            tail -n 20 "$LOGFILE" >&2 || true
            die "dockerd pid $pid still running ${STOP_TIMEOUT}s after SIGTERM"
        fi
        sleep 1
    done
    rm -f "$MARKER"
    say "dockerd stopped after $((SECONDS - t0))s"
}

status_engine() {
    if engine_answers; then
        if pid=$(live_dockerd_pid "$MARKER"); then
            say "running, started by this script (pid $pid)"
        else
            say "running, not started by this script"
        fi
        print_versions
    else
        say "no Docker engine answers"
        return 1
    fi
}

case ${1:-} in
    start) start_engine ;;
    prepare) prepare_host ;;
    stop) stop_engine ;;
    status) status_engine ;;
    *)
        echo "usage: $0 start|prepare|stop|status" >&2
        exit 2
        ;;
esac
