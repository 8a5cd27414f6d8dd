#!/usr/bin/env bash
# The second command: set up whatever is missing, then run the whole test suite (build, lint,
# the import-cycle check, then the end-to-end tests in tests/ beside every package's own tests).
#   bash scripts/test.sh
# Idempotent; this is exactly what CI runs (.ci/run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh

echo "==> build"
pnpm -w run build
echo "==> typecheck, tests included (turbo run typecheck)"
pnpm exec turbo run typecheck --output-logs=errors-only
echo "==> lint (biome check)"
pnpm exec biome check .
echo "==> import cycles (scripts/check-cycles.mjs)"
pnpm -w run check:cycles
# Two lanes at once, each one suite at a time: the end-to-end suite (tests/, one file at a time)
# and every package's own tests (one package after another). The e2e files mostly wait on
# containers, stacks and timeouts, so the packages' suites fit beside them. Run by pnpm, not turbo:
# the build is done, and a second turbo would restore build outputs under the other lane's feet.
echo "==> tests: tests/ (lane e2e) beside every package's own suite (lane pkg)"
started=$SECONDS
# A background lane does not get the terminal's Ctrl-C: stopping this script stops it too.
kill_tree() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
(pnpm --filter @berth/tests run test 2>&1 | sed -u 's/^/e2e | /') &
e2e=$!
trap 'kill_tree "$e2e"; exit 130' INT TERM
pkg_rc=0
pnpm -r --filter '!@berth/tests' --workspace-concurrency=1 run test 2>&1 | sed -u 's/^/pkg | /' || pkg_rc=$?
echo "==> lane pkg done in $((SECONDS - started)) s (exit $pkg_rc); waiting for lane e2e"
e2e_rc=0
wait "$e2e" || e2e_rc=$?
echo "==> lane e2e done in $((SECONDS - started)) s (exit $e2e_rc)"
if [ "$pkg_rc" -ne 0 ] || [ "$e2e_rc" -ne 0 ]; then
  echo "==> tests failed (lane pkg exit $pkg_rc, lane e2e exit $e2e_rc)" >&2
  exit 1
fi
echo "==> all tests passed"
