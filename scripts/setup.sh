#!/usr/bin/env bash
# Sets up whatever is missing to build and run berth on Debian 12, and nothing else:
#   - apt packages: runc conmon nats-server redis-server docker-registry
#     containernetworking-plugins busybox-static skopeo umoci zstd jq, catatonit (the CRI
#     gateway builds its pause image from this static binary), python3-grpcio python3-protobuf
#     protobuf-compiler (a gRPC C-core CRI client in the cri-gateway tests), apparmor (the shim
#     loads its AppArmor profile with its apparmor_parser; the tests compile it), and the C toolchain the
#     native addons build with (gcc g++ make python3 libc6-dev) (only the missing ones)
#   - pnpm 12.4.2 (via npm, only if missing or another version)
#   - the workspace's dependencies (pnpm install --frozen-lockfile) and a build (turbo)
#   - `berth` on PATH: /usr/local/bin/berth -> packages/cli/bin/berth (a sh launcher of bin/berth.js)
# Idempotent: a second run changes nothing. Needs root (apt-get, /usr/local/bin) and Node.js 20+.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PNPM_VERSION=12.4.2
APT_PACKAGES=(runc conmon nats-server redis-server docker-registry containernetworking-plugins
  busybox-static skopeo umoci zstd jq catatonit python3-grpcio python3-protobuf protobuf-compiler
  apparmor gcc g++ make python3 libc6-dev)

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and /usr/local/bin/berth): sudo bash scripts/setup.sh"

command -v node >/dev/null 2>&1 || die "Node.js 20 is required and not installed: install nodejs (20.x) first"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: berth needs Node.js 20 or newer"

# --- apt packages -------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Debian starts the packages' own servers on 4222/6379/5000 where systemd runs; berth embeds its
  # own NATS and Redis on those ports, so the freshly installed system services are turned off.
  # (Services that were installed before this run are left as they are.)
  if [ -d /run/systemd/system ]; then
    for unit in nats-server redis-server docker-registry; do
      for pkg in "${missing[@]}"; do
        if [ "$pkg" = "$unit" ]; then
          say "disabling the $unit system service (berth runs its own)"
          systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
      done
    done
  fi
else
  say "apt packages: all present"
fi

# --- pnpm ---------------------------------------------------------------------------------------
if [ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]; then
  say "installing pnpm $PNPM_VERSION"
  npm install -g --no-fund --no-audit "pnpm@$PNPM_VERSION" >/dev/null
  hash -r
else
  say "pnpm $PNPM_VERSION: present"
fi

# --- dependencies and build ---------------------------------------------------------------------
say "installing dependencies (pnpm install --frozen-lockfile)"
CI=true pnpm install --frozen-lockfile --reporter=append-only
say "building (turbo run build)"
pnpm exec turbo run build --output-logs=errors-only

# --- berth on PATH ------------------------------------------------------------------------------
# The built client (packages/cli/native/berth.c): it sends the commands `berth up` can run to its
# supervisor, and runs the others as the sh launcher bin/berth does (node without
# NODE_EXTRA_CA_CERTS, whose certificates Node 20 would parse before any JavaScript runs).
target="$ROOT/packages/cli/dist/berth"
[ -x "$target" ] || die "the build made no $target (packages/cli's build compiles native/berth.c with cc)"
chmod +x "$ROOT/packages/cli/bin/berth" "$ROOT/packages/cli/bin/berth.js"
if [ "$(readlink /usr/local/bin/berth 2>/dev/null || true)" != "$target" ]; then
  say "linking /usr/local/bin/berth -> $target"
  ln -sfn "$target" /usr/local/bin/berth
else
  say "berth on PATH: /usr/local/bin/berth"
fi
say "setup done: $(berth --version)"
