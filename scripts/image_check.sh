#!/usr/bin/env bash
# Build the image with buildah and run its stack, on a machine without a Docker daemon
# (this project's development machines: root, buildah from Debian, no Docker Hub, no
# PyTorch index). What it checks and what it cannot: docs/deploy.md, "What was and was
# not checked".
#
#   sudo bash scripts/image_check.sh          # ~10 min; leaves no image behind
#
# 1. base image: a Debian bookworm root filesystem from debootstrap (python3, venv,
#    python-is-python3, CA certificates) tagged localhost/python:3.11-slim-bookworm,
#    standing in for Docker Hub's python:3.11-slim-bookworm (BASE_IMAGE=... to use a real
#    one that the machine can pull);
# 2. `buildah bud -f deploy/Dockerfile` from `git archive HEAD` (what a clone holds), the
#    machine's pip configuration, local package mirrors and CA bundle mounted in, torch
#    from TORCH_INDEX_URL (default PyPI: the CPU index is unreachable here);
# 3. `intervue up` from the image as its user (buildah run, chroot isolation: podman's
#    runtime cannot start containers in this sandbox), its health endpoints, a 2-session
#    load-harness run against it from the host venv, then SIGTERM to dumb-init and a
#    clean exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
TAG=${TAG:-localhost/intervue:check}
BASE_IMAGE=${BASE_IMAGE:-}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}
WORK=$(mktemp -d /tmp/intervue-image-check.XXXXXX)
CONTAINER=""

cleanup() {
    [ -n "$CONTAINER" ] && buildah rm "$CONTAINER" >/dev/null 2>&1 || true
    buildah rmi -f "$TAG" >/dev/null 2>&1 || true
    [ -z "${BASE_IMAGE_GIVEN:-}" ] && buildah rmi -f localhost/python:3.11-slim-bookworm >/dev/null 2>&1 || true
    buildah rmi --prune >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in buildah debootstrap git curl; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install buildah debootstrap)" >&2; exit 2; }
done

if [ -n "$BASE_IMAGE" ]; then
    BASE_IMAGE_GIVEN=1
else
    echo "== base image (debootstrap bookworm)"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1
    base=$(buildah from scratch)
    cp -a "$WORK/rootfs/." "$(buildah mount "$base")/"
    buildah umount "$base" >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 "$base"
    buildah commit -q "$base" localhost/python:3.11-slim-bookworm >/dev/null
    buildah rm "$base" >/dev/null
    rm -rf "$WORK/rootfs"
    BASE_IMAGE=localhost/python:3.11-slim-bookworm
fi

echo "== build (deploy/Dockerfile from git archive HEAD)"
mkdir "$WORK/context"
git archive HEAD | tar -x -C "$WORK/context"
mounts=()
for path in /opt/wheels /opt/pypi /opt/pypi-more /etc/xdg/pip /etc/pip.conf \
            /etc/ssl/certs/ca-certificates.crt; do
    [ -e "$path" ] && mounts+=(-v "$path:$path:ro")
done
start=$(date +%s)
(cd "$WORK/context" && buildah bud --isolation chroot --network host --layers \
    "${mounts[@]}" --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
    --build-arg TORCH_INDEX_URL="$TORCH_INDEX_URL" \
    -f deploy/Dockerfile -t "$TAG" . >"$WORK/build.log" 2>&1) \
    || { tail -40 "$WORK/build.log"; echo "build failed" >&2; exit 1; }
echo "built in $(( $(date +%s) - start )) s: $(buildah images --format '{{.Size}}' "$TAG")"

echo "== intervue up from the image (uid 10001)"
CONTAINER=$(buildah from "$TAG")
buildah run --isolation chroot --user 10001:10001 "$CONTAINER" -- \
    dumb-init --rewrite 15:2 -- intervue up >"$WORK/up.log" 2>&1 &
runner=$!
url=""
for _ in $(seq 120); do
    url=$(grep -o 'http://127.0.0.1:8080/?room=[^ ]*' "$WORK/up.log" | head -1 || true)
    [ -n "$url" ] && curl -sf http://127.0.0.1:8080/healthz >/dev/null && break
    sleep 1
done
[ -n "$url" ] || { tail -40 "$WORK/up.log"; echo "the stack did not come up" >&2; exit 1; }
echo "gateway: $(curl -s http://127.0.0.1:8080/healthz)"
for _ in $(seq 30); do curl -sf http://127.0.0.1:8501/_stcore/health >/dev/null && break; sleep 1; done
echo "dashboard: $(curl -s http://127.0.0.1:8501/_stcore/health)"

echo "== load harness from the host: 2 sessions × 30 s"
"$PY" -m deploy.bench.load --sessions 2 --duration 30 --url "$url" --output "$WORK/load.md" \
    >"$WORK/load.log" 2>&1 || { tail -20 "$WORK/load.log"; exit 1; }
sed -n '1,8p' "$WORK/load.md"

echo "== SIGTERM to dumb-init"
pid=$(pgrep -x dumb-init | head -1)
kill -TERM "$pid"
status=0
wait "$runner" || status=$?
grep -q "deploy.up: stopped" "$WORK/up.log" || { tail -20 "$WORK/up.log"; echo "no clean stop" >&2; exit 1; }
echo "stopped cleanly (exit $status)"
