#!/usr/bin/env bash
# Build the Docker images of the linkbroker lab, with no network inside any build.
#
#   lab/build-images.sh [--rebuild]
#
# 1. linkbroker/base:bookworm  a debootstrap'd Debian bookworm (variant minbase) with python3,
#    pip, iproute2, iputils-ping, procps and ca-certificates, imported with `docker import`.
#    Built only when the tag is missing (or with --rebuild).
# 2. Wheels of the project's dependencies (from pyproject.toml) for CPython 3.11 / manylinux
#    x86_64, downloaded on the host into lab/cache/wheels/. Downloaded again only when the
#    requirement list changes (or with --rebuild).
# 3. linkbroker/lab:latest  lab/Dockerfile on top of the base, with the wheels and the project
#    source installed by pip --no-index. Rebuilt on every run; Docker's layer cache makes that
#    cheap when nothing changed, and the dependency layer survives source edits.
#
# The build context is assembled under lab/cache/context/ (wheels/ and src/ only), so no junk
# from the work tree (.git, caches, lab/cache itself) is ever sent to the daemon.
#
# Needs a running engine (.ci/docker-engine.sh start) and root (debootstrap).
set -euo pipefail
exec </dev/null

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$REPO/lab/cache"
WHEELS="$CACHE/wheels"
CONTEXT="$CACHE/context"
BASE_IMAGE=${LINKBROKER_BASE_IMAGE:-linkbroker/base:bookworm}
LAB_IMAGE=${LINKBROKER_LAB_IMAGE:-linkbroker/lab:latest}
SUITE=bookworm
INCLUDE=python3,python3-pip,iproute2,iputils-ping,procps,ca-certificates
PY_VERSION=3.11
PLATFORMS=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64
    manylinux_2_34_x86_64)

REBUILD=0
for arg in "$@"; do
    case $arg in
        --rebuild) REBUILD=1 ;;
        -h | --help)
            sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

say() { printf '[build-images] %s\n' "$*"; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }

TIMINGS=()
T_STEP=0
step_begin() { T_STEP=$SECONDS; say "== $1"; }
step_end() {
    local took=$((SECONDS - T_STEP))
    TIMINGS+=("$(printf '%-28s %4ss' "$1" "$took")")
    say "   $1: ${took}s"
}

TMPROOT=""
OLD_BASE=""
cleanup() {
    if [[ -n $TMPROOT && -d $TMPROOT ]]; then
        # debootstrap mounts proc/sys inside the target; never delete through a mount.
        local m
        while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done < <(findmnt -rn -o TARGET | grep -F -- "$TMPROOT/" | sort -r || true)
        rm -rf --one-file-system -- "$TMPROOT"
    fi
}
trap cleanup EXIT

timeout 20 docker info >/dev/null 2>&1 ||
    die "no Docker engine answers 'docker info'; run: sudo .ci/docker-engine.sh start"

# The Debian mirror the host's apt uses (deb822 .sources or one-line .list), not -security.
debian_mirror() {
    local f url
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        url=$(awk 'tolower($1)=="uris:" {for (i=2;i<=NF;i++) print $i}' "$f" |
            grep -E '/debian/?$' | head -n 1 || true)
        if [[ -n $url ]]; then
            printf '%s\n' "${url%/}"
            return
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        url=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i ~ /^(https?|file):/) {print $i; break}}' \
            "$f" | grep -E '/debian/?$' | head -n 1 || true)
        if [[ -n $url ]]; then
            printf '%s\n' "${url%/}"
            return
        fi
    done
    printf '%s\n' http://deb.debian.org/debian
}

build_base() {
    if [[ $REBUILD -eq 0 ]] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE exists ($(docker image inspect -f '{{.Id}} {{.Created}}' "$BASE_IMAGE" |
            cut -c1-40)); skipping debootstrap (--rebuild forces)"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 ||
        die "debootstrap missing; run: sudo .ci/docker-engine.sh start (it installs it)"
    local mirror
    mirror=$(debian_mirror)
    TMPROOT=$(mktemp -d /var/tmp/linkbroker-base.XXXXXX)
    local root="$TMPROOT/rootfs"

    step_begin "debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$mirror" \
        >"$TMPROOT/debootstrap.log" 2>&1 &
    local pid=$! rc=0
    # Progress: the last package debootstrap talks about, every 10 s.
    while kill -0 "$pid" 2>/dev/null; do
        sleep 10
        kill -0 "$pid" 2>/dev/null || break
        say "   ... $(tail -n 1 "$TMPROOT/debootstrap.log" | cut -c1-100)"
    done
    wait "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "$TMPROOT/debootstrap.log" >&2 || true
        [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (exit $rc)"
    fi
    step_end "debootstrap"

    step_begin "trim rootfs"
    # Same mirror inside, and no caches: lists and .debs would only bloat the image.
    printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$root/etc/apt/sources.list"
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old
    # Documentation and translations: every build step copies the rootfs (vfs), keep it small.
    find "$root"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
    find "$root"/usr/share/doc -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    say "   rootfs size: $(du -sh --one-file-system "$root" | cut -f1)"
    step_end "trim rootfs"

    local old
    old=$(image_id "$BASE_IMAGE")
    step_begin "docker import $BASE_IMAGE"
    tar --numeric-owner --xattrs -C "$root" -c . |
        docker import \
            --change 'ENV LANG=C.UTF-8' \
            --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
            --change 'ENV PIP_ROOT_USER_ACTION=ignore' \
            --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
            --change 'ENV PYTHONDONTWRITEBYTECODE=1' \
            --change 'LABEL org.opencontainers.image.title=linkbroker-lab-base' \
            --change 'CMD ["/bin/bash"]' \
            --message "debootstrap --variant=minbase --include=$INCLUDE $SUITE $mirror" \
            - "$BASE_IMAGE"
    step_end "docker import"
    # The old base goes once the lab image no longer builds on it (after build_lab).
    OLD_BASE=$old
    cleanup
    TMPROOT=""
}

# Runtime and build requirements from pyproject.toml, one a line.
requirements() {
    python3 - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
for req in data["build-system"]["requires"] + data["project"]["dependencies"]:
    print(req)
EOF
}

fetch_wheels() {
    local reqs stamp_want
    reqs=$(requirements)
    stamp_want=$(printf '%s\n%s %s\n' "$reqs" "$PY_VERSION" "${PLATFORMS[*]}" | sha256sum | cut -c1-16)
    if [[ $REBUILD -eq 0 && -f $WHEELS/.stamp && $(cat "$WHEELS/.stamp") == "$stamp_want" ]]; then
        say "wheels up to date in ${WHEELS#"$REPO"/} ($(find "$WHEELS" -name '*.whl' | wc -l) files)"
        return
    fi
    step_begin "download wheels (CPython $PY_VERSION, manylinux x86_64)"
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    printf '%s\n' "$reqs" >"$WHEELS/requirements.txt"
    local -a plat=()
    local p
    for p in "${PLATFORMS[@]}"; do plat+=(--platform "$p"); done
    python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" \
        "${plat[@]}" -r "$WHEELS/requirements.txt" -d "$WHEELS" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
    printf '%s\n' "$stamp_want" >"$WHEELS/.stamp"
    say "   $(find "$WHEELS" -name '*.whl' -printf '%f\n' | sort | tr '\n' ' ')"
    step_end "download wheels"
}

# lab/cache/context/{wheels,src}: only what the image needs, nothing from .git or caches.
assemble_context() {
    step_begin "assemble build context"
    rm -rf "$CONTEXT"
    mkdir -p "$CONTEXT/src"
    cp -a "$WHEELS" "$CONTEXT/wheels"
    rm -f "$CONTEXT/wheels/.stamp"
    local -a items=()
    local item
    for item in pyproject.toml README.md LICENSE broker zones clients; do
        [[ -e $REPO/$item ]] && items+=("$item")
    done
    tar -C "$REPO" -c \
        --exclude='__pycache__' --exclude='*.py[co]' --exclude='*.egg-info' \
        --exclude='.mypy_cache' --exclude='.ruff_cache' --exclude='.pytest_cache' \
        --exclude='build' \
        "${items[@]}" | tar -C "$CONTEXT/src" -x
    say "   context: $(du -sh "$CONTEXT" | cut -f1) ($(find "$CONTEXT" -type f | wc -l) files)"
    step_end "assemble context"
}

# With vfs every layer is a full copy of the rootfs (~150 MB): drop the image a tag used to
# name once nothing names it any more (best-effort; kept while a container uses it).
drop_if_dangling() {
    local old=$1 tags
    [[ -n $old ]] || return 0
    tags=$(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null || echo gone)
    if [[ $tags == 0 ]]; then
        if docker image rm "$old" >/dev/null 2>&1; then
            say "   removed superseded image ${old:7:12}"
        fi
    fi
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

build_lab() {
    local old
    old=$(image_id "$LAB_IMAGE")
    step_begin "docker build $LAB_IMAGE"
    # The legacy builder: this engine (Debian docker.io) has no buildx, and none is needed.
    DOCKER_BUILDKIT=0 docker build \
        --network none \
        -f "$REPO/lab/Dockerfile" \
        -t "$LAB_IMAGE" \
        "$CONTEXT"
    step_end "docker build lab"
    [[ $(image_id "$LAB_IMAGE") == "$old" ]] || drop_if_dangling "$old"
}

T_ALL=$SECONDS
build_base
fetch_wheels
assemble_context
build_lab
[[ -z $OLD_BASE || $(image_id "$BASE_IMAGE") == "$OLD_BASE" ]] || drop_if_dangling "$OLD_BASE"

say "images:"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' |
    grep -E "^(${BASE_IMAGE%%:*}|${LAB_IMAGE%%:*}):" | sed 's/^/[build-images]   /' || true
say "timings:"
for t in "${TIMINGS[@]}"; do say "  $t"; done
say "  $(printf '%-28s %4ss' total $((SECONDS - T_ALL)))"
