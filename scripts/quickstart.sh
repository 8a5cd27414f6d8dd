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

# ------------------------------------------------------------------------------------------------
# LATER (the lead extends this): pull an image and run a container, e.g.
#   berth pull docker.io/library/busybox:1.36
#   berth run --rm docker.io/library/busybox:1.36 echo hello from berth
# ------------------------------------------------------------------------------------------------

echo
echo "berth is running. Try 'berth status', 'berth --help'; stop it with 'berth down'."
