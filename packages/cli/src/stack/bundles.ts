import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api/errors';

/**
 * A build restored from turbo's cache writes a bundle and the files it was made of within the same
 * moment, in any order; a package rebuilt by hand afterwards is seconds newer.
 */
const SAME_BUILD_MS = 1000;

/** Environment variable that turns the bundles off (`0`): every process runs from dist/ modules. */
export const SERVICE_BUNDLES_ENV = 'BERTH_SERVICE_BUNDLES';

const mtime = (path: string): number | undefined => statSync(path, { throwIfNoEntry: false })?.mtimeMs;

/**
 * Whether the bundle `<dir>/<name>.mjs` (made by packages/cli/bundle-services.mjs) may run: it
 * exists, and none of the workspace files it was made of (listed in `<name>.inputs.json`, relative
 * to `dir`) is newer than it. A package rebuilt with tsc alone makes its bundle stale, and a stale
 * bundle must never run in place of the code that was just built.
 */
export function bundleIsFresh(dir: string, name: string): boolean {
  const built = mtime(join(dir, `${name}.mjs`));
  if (built === undefined) return false;
  let inputs: unknown;
  try {
    inputs = JSON.parse(readFileSync(join(dir, `${name}.inputs.json`), 'utf8'));
  } catch {
    return false;
  }
  if (!Array.isArray(inputs) || inputs.length === 0) return false;
  return inputs.every(
    (p) =>
      typeof p === 'string' && (mtime(join(dir, p)) ?? Number.POSITIVE_INFINITY) <= built + SAME_BUILD_MS,
  );
}

/** Whether `berth up` may run bundles at all: BERTH_SERVICE_BUNDLES unset, `1` or `0`. */
export function bundlesEnabled(env: NodeJS.ProcessEnv): boolean {
  const v = env[SERVICE_BUNDLES_ENV];
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new BerthError(Code.INVALID_ARGUMENT, `invalid ${SERVICE_BUNDLES_ENV} "${v}": expected 1 or 0`);
}

/**
 * The entry point a process of the stack runs: its bundle `<dir>/<name>.mjs` when bundles are on
 * and it is fresh, else `fallback` (the dist/ module it was bundled from). A bundle holds the
 * service's ~300 modules as one script: 7-15 MB less PSS per process and a start-up several times
 * faster (docs/benchmarks.md, footprint round 3).
 */
export function entryPoint(dir: string, name: string, fallback: string, env: NodeJS.ProcessEnv): string {
  return bundlesEnabled(env) && bundleIsFresh(dir, name) ? join(dir, `${name}.mjs`) : fallback;
}
