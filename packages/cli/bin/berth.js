#!/usr/bin/env node
import { readFileSync, statSync } from 'node:fs';

// The bundle (dist/bundle, built by `pnpm build` after tsc) starts several times faster than the
// hundreds of modules of dist/. It runs unless one of the files it was made of is newer (a package
// rebuilt with tsc alone): then the modules of dist/ run, so a stale bundle never does.
const dir = new URL('../dist/bundle/', import.meta.url);
const mtime = (url) => statSync(url, { throwIfNoEntry: false })?.mtimeMs;
function bundleIsFresh() {
  try {
    const built = mtime(new URL('main.js', dir));
    if (built === undefined) return false;
    const inputs = JSON.parse(readFileSync(new URL('inputs.json', dir), 'utf8'));
    return inputs.every((p) => (mtime(new URL(p, dir)) ?? Number.POSITIVE_INFINITY) <= built);
  } catch {
    return false;
  }
}
await import(bundleIsFresh() ? '../dist/bundle/main.js' : '../dist/main.js');
