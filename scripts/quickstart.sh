#!/usr/bin/env bash
# The newcomer's first command: set up whatever is missing, start berth, and show it working.
#   bash scripts/quickstart.sh
# Idempotent: run it again and it finds everything in place and berth already up.
# Stop berth with `berth down`; see README.md for configuration and operation.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

echo
echo "==> berth up"
berth up

echo
echo "==> berth status"
berth status

# --- berth's main job: pull an image and run a container ----------------------------------------
# This machine may not reach Docker Hub, so the image is built here from busybox-static and served
# by a throwaway local registry (Debian's docker-registry on a free loopback port): berth then does
# a real pull (resolve, verify every digest, unpack into overlay snapshots) and runs a container.
work="$(mktemp -d)"
registry_pid=""
# The registry dies of the SIGTERM we send it, so `wait` returns 143: that is the expected end,
# not a failure of the quickstart (under `set -e` it would become the script's exit status).
cleanup() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo
echo "==> building a busybox image (scripts/busybox-image.sh)"
bash "$ROOT/scripts/busybox-image.sh" "$work/busybox.tar" localhost/busybox:quickstart

port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
reg="127.0.0.1:$port"
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: %s\n' \
  "$work" "$reg" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
image="$reg/library/busybox:quickstart"

echo
echo "==> berth load, tag and push it to a local registry ($reg)"
berth load -i "$work/busybox.tar"
berth tag localhost/busybox:quickstart "$image"
berth push "$image"
berth rmi "$image" localhost/busybox:quickstart

echo
echo "==> berth pull $image"
berth pull "$image"
berth images

echo
echo "==> berth run --rm $image echo hello from a berth container"
berth run --rm "$image" sh -c 'echo "hello from a berth container: $(uname -n), pid $$"'

# Keep the image under a stable name for later runs, drop the registry-specific one.
berth tag "$image" localhost/busybox:quickstart
berth rmi "$image" > /dev/null

echo
echo "berth is running. Try: berth run --rm -it localhost/busybox:quickstart sh"
echo "                      berth ps -a, berth images, berth status, berth --help; stop with 'berth down'."
