#!/usr/bin/env bash
# The second command: set up whatever is missing, then run the whole test suite (build, lint,
# the import-cycle check, every package's tests and the end-to-end tests in tests/, one package at a time).
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
echo "==> tests (turbo run test --concurrency=1)"
pnpm exec turbo run test --concurrency=1
echo "==> all tests passed"
