#!/usr/bin/env bash
# A private Docker engine and the Redis test image, for testcontainers on a machine that reaches
# Debian's packages but no container registry (the steps of shared/recipes/docker-engine.md).
#
#   source infra/ci/redis-image.sh     # in .ci/run: exports DOCKER_HOST and TESTCONTAINERS_RYUK_DISABLED
#   ...pytest...                       # tests/redis_server.py then runs Redis in a container
#   hexq_docker_stop                   # stops the engine and removes its directory
#
#   eval "$(infra/ci/redis-image.sh)"  # the same when run rather than sourced: it prints the exports
#
# Either way the exports are also written to "$HEXQ_DOCKER_DIR/env". Settings (environment):
#   HEXQ_TEST_REDIS_IMAGE  image to build (default hexq-test/redis:local; the tests read the same variable)
#   HEXQ_DOCKER_DIR        engine state directory (default: a new mktemp -d, outside the repo)
# The engine runs with --bridge=none --iptables=false: containers use host networking, so every
# connection the tests make stays on 127.0.0.1. Needs root (apt-get, dockerd).

hexq_redis_image() {
    local image="${HEXQ_TEST_REDIS_IMAGE:-hexq-test/redis:local}"
    if ! command -v dockerd >/dev/null || ! command -v redis-server >/dev/null; then
        echo "redis-image: installing docker.io and redis-server" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io redis-server >&2 \
            || { echo "redis-image: apt-get install failed" >&2; return 1; }
    fi

    local dir="${HEXQ_DOCKER_DIR:-}"
    if [[ -z "$dir" ]]; then
        dir="$(mktemp -d -t hexq-docker.XXXXXX)" || return 1
    fi
    mkdir -p "$dir" && HEXQ_DOCKER_DIR="$dir"
    local host="unix://$dir/docker.sock"

    if ! docker -H "$host" info >/dev/null 2>&1; then
        dockerd --bridge=none --iptables=false --ip-masq=false \
                --data-root "$dir/data" --exec-root "$dir/exec" \
                -H "$host" --pidfile "$dir/pid" >"$dir/log" 2>&1 </dev/null &
        local i
        for i in $(seq 150); do  # up to 30 s; usually a few
            docker -H "$host" info >/dev/null 2>&1 && break
            sleep 0.2
        done
        if ! docker -H "$host" info >/dev/null 2>&1; then
            echo "redis-image: dockerd did not start; last lines of $dir/log:" >&2
            tail -n 20 "$dir/log" >&2
            return 1
        fi
    fi

    if ! docker -H "$host" image inspect "$image" >/dev/null 2>&1; then
        # Debian's redis-server plus exactly the shared libraries ldd names: no base image to pull.
        local root="$dir/rootfs" lib
        rm -rf "$root" && mkdir -p "$root/usr/bin" "$root/data" || return 1
        cp /usr/bin/redis-server "$root/usr/bin/" || return 1
        for lib in $(ldd /usr/bin/redis-server | grep -o '/[^ ]*'); do
            mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib" || return 1
        done
        tar -C "$root" -c . | docker -H "$host" import -c 'CMD ["/usr/bin/redis-server"]' - "$image" >/dev/null \
            || { echo "redis-image: docker import failed" >&2; return 1; }
        rm -rf "$root"
    fi

    export DOCKER_HOST="$host"
    export TESTCONTAINERS_RYUK_DISABLED=true  # the reaper image cannot be pulled; the tests remove their containers
    export HEXQ_TEST_REDIS_IMAGE="$image" HEXQ_DOCKER_DIR="$dir"
    printf 'export DOCKER_HOST=%q\nexport TESTCONTAINERS_RYUK_DISABLED=true\nexport HEXQ_TEST_REDIS_IMAGE=%q\nexport HEXQ_DOCKER_DIR=%q\n' \
        "$host" "$image" "$dir" >"$dir/env"
    echo "redis-image: engine at $host, image $image" >&2
}

# Stop the engine this script started (by its pid file) and remove its directory.
hexq_docker_stop() {
    local dir="${HEXQ_DOCKER_DIR:-}"
    [[ -n "$dir" && -f "$dir/pid" ]] || return 0
    local pid
    pid="$(cat "$dir/pid")"
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # dockerd leaves mounts behind (its network namespace); unmount them, deepest first, before rm.
    local mnt
    for mnt in $(awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$mnt" 2>/dev/null || true
    done
    rm -rf "$dir" 2>/dev/null || true
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    hexq_redis_image
    cat "$HEXQ_DOCKER_DIR/env"
else
    hexq_redis_image
fi
