#!/usr/bin/env bash
# Start and stop the services the docker-marked tests need: a Docker engine, a registry on
# 127.0.0.1:5001 and a local base image (no public container registry is reachable here).
# Everything started is recorded by PID in $STATE and stopped by PID.
set -euo pipefail

STATE=${MLSHIP_CI_STATE:-/tmp/mlship-ci}
BASE_IMAGE=${MLSHIP_BASE_IMAGE:-mlship-base:bookworm}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

wait_for() {  # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 1
    done
}

start() {
    install_packages
    mkdir -p "$STATE"
    if ! docker info >/dev/null 2>&1; then
        dockerd --storage-driver vfs --iptables=false --bridge=none \
            --data-root "$STATE/docker" --exec-root "$STATE/exec" \
            --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
        echo $! >"$STATE/dockerd.started"
        wait_for 60 docker info
    fi
    if ! (exec 3<>/dev/tcp/127.0.0.1/5001) 2>/dev/null; then
        cat >"$STATE/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $STATE/registry
http:
  addr: 127.0.0.1:5001
YAML
        docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
        echo $! >"$STATE/registry.started"
        wait_for 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5001'
    fi
    if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        build_base_image
    fi
}

build_base_image() {
    # Debian bookworm with its python3 (3.11), venv (whose pip builds the image's
    # environment; no system pip, setuptools or wheel) and OpenMP (libgomp1, which LightGBM
    # links), imported as an image. The mirror is the one apt already uses on this machine. Slim as
    # Debian's -slim images are: no manuals, documentation or translations, now or from any
    # package installed later.
    local mirror rootfs="$STATE/rootfs"
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libgomp1 \
        bookworm "$rootfs" ${mirror:+"$mirror"} >"$STATE/debootstrap.log" 2>&1
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/*
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
        >"$rootfs"/etc/dpkg/dpkg.cfg.d/slim
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

stop() {
    local pid
    for name in registry dockerd; do
        if [[ -f "$STATE/$name.started" ]]; then
            pid=$(cat "$STATE/$name.started")
            kill "$pid" 2>/dev/null || true
            wait_for 30 bash -c "! kill -0 $pid" || true  # the engine stops its containers
            rm -f "$STATE/$name.started"
        fi
    done
}

discard() {
    # stop, then remove what the engine, the registry and npm stored (4-5 GB on vfs, per
    # run of .ci/run, whose state folder is new each time); the logs stay. dockerd leaves
    # its network namespace mounted under its exec root.
    stop
    if [[ -e "$STATE/exec/netns/default" ]]; then
        umount "$STATE/exec/netns/default" 2>/dev/null || true
    fi
    rm -rf "$STATE/docker" "$STATE/exec" "$STATE/registry" "$STATE/npm"
}

"$@"
