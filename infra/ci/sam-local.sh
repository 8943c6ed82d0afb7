#!/usr/bin/env bash
# `sam local invoke` on the private Docker engine of infra/ci/redis-image.sh: no registry, host
# networking only (the steps of shared/recipes/sam-local/README.md). Source it after redis-image.sh:
#
#   source infra/ci/redis-image.sh     # the engine: exports DOCKER_HOST
#   source infra/ci/sam-local.sh       # exports HEXQ_SAM and HEXQ_SAM_DOCKER_HOST
#   ...pytest...                       # tests/integration/test_sam_local.py runs sam with them
#   hexq_sam_stop; hexq_docker_stop    # the shim first, then the engine
#
#   eval "$(infra/ci/sam-local.sh)"    # the same when run rather than sourced: it prints the exports
#
# What it does, once per run:
#   1. installs aws-sam-cli into its own venv, outside the repository ($HEXQ_SAM_DIR/venv);
#   2. builds the local stand-in for public.ecr.aws/lambda/python:3.11-x86_64 with the recipe's
#      build-lambda-python-image.sh (debootstrap; about 40 s), unless the engine already has it;
#   3. starts the recipe's docker-hostnet-shim.py, a Docker API proxy that makes SAM's containers use
#      host networking, on $HEXQ_SAM_DIR/hostnet.sock.
# DOCKER_HOST is left pointing at the real engine (testcontainers uses it); only sam is pointed at the
# shim, by the tests, through HEXQ_SAM_DOCKER_HOST. The exports are also written to $HEXQ_SAM_DIR/env.
#
# Settings (environment):
#   HEXQ_SAM_RECIPE       the recipe directory (default: <repo>/../shared/recipes/sam-local)
#   HEXQ_SAM_DIR          state directory (default: $HEXQ_DOCKER_DIR/sam-local, else a new mktemp -d)
#   HEXQ_SAM_CLI_VERSION  the aws-sam-cli release to install (default 1.170.0, the one the recipe was
#                         checked with: the shim depends on how SAM creates its containers)
# Needs root (apt-get install debootstrap, debootstrap itself).

hexq_sam_local() {
    local repo
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)" || return 1
    local recipe="${HEXQ_SAM_RECIPE:-$(dirname "$repo")/shared/recipes/sam-local}"
    local file
    for file in build-lambda-python-image.sh docker-hostnet-shim.py; do
        if [[ ! -f "$recipe/$file" ]]; then
            echo "sam-local: $recipe/$file is missing: the sam-local recipe must sit at ../shared/recipes/sam-local" \
                 "next to the repository (or set HEXQ_SAM_RECIPE)" >&2
            return 1
        fi
    done
    if [[ "${DOCKER_HOST:-}" != unix://* ]] || ! docker info >/dev/null 2>&1; then
        echo "sam-local: no Docker engine at DOCKER_HOST=${DOCKER_HOST:-<unset>}; source infra/ci/redis-image.sh first" >&2
        return 1
    fi
    local upstream="${DOCKER_HOST#unix://}"

    local dir="${HEXQ_SAM_DIR:-}"
    if [[ -z "$dir" ]]; then
        if [[ -n "${HEXQ_DOCKER_DIR:-}" ]]; then
            dir="$HEXQ_DOCKER_DIR/sam-local"  # removed with the engine by hexq_docker_stop
        else
            dir="$(mktemp -d -t hexq-sam.XXXXXX)" || return 1
        fi
    fi
    mkdir -p "$dir" && dir="$(cd "$dir" && pwd)" && HEXQ_SAM_DIR="$dir" || return 1

    # 1. SAM CLI, in its own venv
    local version="${HEXQ_SAM_CLI_VERSION:-1.170.0}"
    local sam="$dir/venv/bin/sam"
    if [[ ! -x "$sam" ]] || ! "$sam" --version 2>/dev/null | grep -qF "$version"; then
        echo "sam-local: installing aws-sam-cli==$version into $dir/venv" >&2
        python3 -m venv "$dir/venv" \
            && "$dir/venv/bin/pip" install -q "aws-sam-cli==$version" >"$dir/pip.log" 2>&1 \
            || { echo "sam-local: pip install aws-sam-cli failed; last lines of $dir/pip.log:" >&2
                 tail -n 20 "$dir/pip.log" >&2; return 1; }
    fi

    # 2. the Lambda Python 3.11 base image, built locally (SAM derives its -rapid- image from it)
    if ! docker image inspect public.ecr.aws/lambda/python:3.11-x86_64 >/dev/null 2>&1; then
        if ! command -v debootstrap >/dev/null; then
            echo "sam-local: installing debootstrap" >&2
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >"$dir/apt.log" 2>&1 \
                || { echo "sam-local: apt-get install debootstrap failed; last lines of $dir/apt.log:" >&2
                     tail -n 20 "$dir/apt.log" >&2; return 1; }
        fi
        echo "sam-local: building public.ecr.aws/lambda/python:3.11-x86_64 (debootstrap, about a minute)" >&2
        WORK="$dir/lambda-image" PIP="$dir/venv/bin/pip" bash "$recipe/build-lambda-python-image.sh" \
            >"$dir/image.log" 2>&1 \
            || { echo "sam-local: building the Lambda base image failed; last lines of $dir/image.log:" >&2
                 tail -n 20 "$dir/image.log" >&2; return 1; }
        rm -rf "$dir/lambda-image/rootfs"
        hexq_sam_patch_image "$dir" || return 1
    fi

    # 3. the host-network shim between sam and the engine
    local sock="$dir/hostnet.sock"
    hexq_sam_stop_shim
    rm -f "$sock"
    python3 "$recipe/docker-hostnet-shim.py" "$upstream" "$sock" >"$dir/shim.log" 2>&1 </dev/null &
    echo $! >"$dir/shim.pid"
    local i
    for i in $(seq 50); do  # up to 10 s; usually well under one
        [[ -S "$sock" ]] && docker -H "unix://$sock" version >/dev/null 2>&1 && break
        sleep 0.2
    done
    if ! docker -H "unix://$sock" version >/dev/null 2>&1; then
        echo "sam-local: the docker-hostnet shim did not answer on $sock; $dir/shim.log:" >&2
        tail -n 20 "$dir/shim.log" >&2
        hexq_sam_stop_shim
        return 1
    fi

    export HEXQ_SAM="$sam" HEXQ_SAM_DOCKER_HOST="unix://$sock" HEXQ_SAM_DIR="$dir"
    export SAM_CLI_TELEMETRY=0
    printf 'export HEXQ_SAM=%q\nexport HEXQ_SAM_DOCKER_HOST=%q\nexport HEXQ_SAM_DIR=%q\nexport SAM_CLI_TELEMETRY=0\n' \
        "$HEXQ_SAM" "$HEXQ_SAM_DOCKER_HOST" "$dir" >"$dir/env"
    echo "sam-local: $("$sam" --version), shim at $HEXQ_SAM_DOCKER_HOST -> $DOCKER_HOST" >&2
}

# The stand-in runs Debian bookworm's Python, 3.11.2; AWS's python3.11 runtime is a later 3.11. `sam build`
# resolves requirements.txt with this machine's Python (3.11.3 or later), so redis-py's
# `async-timeout; python_full_version < "3.11.3"` is left out of the build, and on 3.11.2 redis-py
# cannot be imported. Add that one package to the image's own dist-packages, as the runtime ships boto3:
# the stand-in then runs what sam builds for the real runtime. (docker create/cp/commit: no registry.)
hexq_sam_patch_image() {
    local dir="$1" image=public.ecr.aws/lambda/python:3.11-x86_64 extra="$1/lambda-image/extra" cid
    rm -rf "$extra"
    "$dir/venv/bin/pip" install -q --only-binary=:all: --python-version 3.11 --implementation cp \
        --target "$extra" "async-timeout>=4.0.3" >>"$dir/image.log" 2>&1 \
        || { echo "sam-local: pip install async-timeout for the image failed; see $dir/image.log" >&2; return 1; }
    cid="$(docker create "$image")" || return 1
    docker cp "$extra/." "$cid:/usr/local/lib/python3.11/dist-packages/" >/dev/null \
        && docker commit "$cid" "$image" >/dev/null \
        && docker tag "$image" public.ecr.aws/lambda/python:3.11
    local rc=$?
    docker rm "$cid" >/dev/null 2>&1 || true
    rm -rf "$extra"
    docker rmi public.ecr.aws/lambda/python:3.11-rapid-x86_64 >/dev/null 2>&1 || true
    [[ $rc -eq 0 ]] || { echo "sam-local: patching $image failed" >&2; return 1; }
}

# Stop the shim this script started (by its pid file).
hexq_sam_stop_shim() {
    local dir="${HEXQ_SAM_DIR:-}"
    [[ -n "$dir" && -f "$dir/shim.pid" ]] || return 0
    local pid
    pid="$(cat "$dir/shim.pid")"
    kill "$pid" 2>/dev/null || true
    rm -f "$dir/shim.pid" "$dir/hostnet.sock"
}

# Stop the shim and remove the state directory (the venv and logs); the engine is hexq_docker_stop's.
hexq_sam_stop() {
    local dir="${HEXQ_SAM_DIR:-}"
    [[ -n "$dir" && -d "$dir" ]] || return 0
    hexq_sam_stop_shim
    rm -rf "$dir" 2>/dev/null || true
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    hexq_sam_local
    cat "$HEXQ_SAM_DIR/env"
else
    hexq_sam_local
fi
