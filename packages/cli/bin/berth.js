#!/usr/bin/env node
// CommonJS (bin/package.json): an ES module entry point costs every command ~7 ms more to start.
const { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } = require('node:fs');
const Module = require('node:module');
const { join } = require('node:path');
const vm = require('node:vm');

// The bundle (dist/bundle/berth.cjs, built by `pnpm build` after tsc) starts several times faster
// than the hundreds of modules of dist/. It runs unless one of the files it was made of is newer
// (a package rebuilt with tsc alone): then the modules of dist/ run, so a stale bundle never does.
const dir = join(__dirname, '..', 'dist', 'bundle', '/');
const bundle = `${dir}berth.cjs`;
const mtime = (path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs;
// A build restored from turbo's cache writes the bundle and its inputs within the same moment, in
// any order; a package rebuilt by hand afterwards is seconds newer.
const SAME_BUILD_MS = 1000;

function bundleIsFresh() {
  try {
    const built = mtime(bundle);
    if (built === undefined) return false;
    const inputs = JSON.parse(readFileSync(`${dir}inputs.json`, 'utf8'));
    return inputs.every((p) => (mtime(dir + p) ?? Number.POSITIVE_INFINITY) <= built + SAME_BUILD_MS);
  } catch {
    return false;
  }
}

/** The command a run is for (`ps`, `--help`), past the global `-n NAME`; `_` when there is none. */
function cacheKey(argv) {
  let i = 0;
  for (;;) {
    if (argv[i] === '-n' || argv[i] === '--namespace') i += 2;
    else if (/^(-n.|--namespace=)/.test(argv[i] ?? '')) i++;
    else break;
  }
  const word = argv[i] ?? '';
  return /^-{0,2}[a-z][a-z0-9-]{0,30}$/.test(word) ? word : '_';
}

/**
 * Runs the bundle with V8's code cache (Node 20 has no module compile cache of its own): compiling
 * its 2 MB is a third of a short command's CPU time. One cache per command (`ps`, `images`...),
 * each holding the functions that command ran: a cache of all of them would cost `--version` more
 * to load than it saves. V8 rejects a cache made for another source, Node or flags; it is then
 * made anew at exit. A cache that cannot be written (a read-only install) only costs speed.
 */
function runBundle() {
  // The bundle is ASCII (bundle.mjs makes sure): latin1 is the cheapest exact decoding.
  const source = readFileSync(bundle, 'latin1');
  const key = cacheKey(process.argv.slice(2));
  const cacheFile = `${dir}cache/${key}.bin`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData });
  if (cachedData === undefined || script.cachedDataRejected === true) {
    process.once('exit', () => {
      try {
        mkdirSync(`${dir}cache`, { recursive: true });
        const tmp = `${cacheFile}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData());
        renameSync(tmp, cacheFile);
      } catch {
        // Read-only or full: the next run compiles again.
      }
    });
  }
  const mod = new Module(bundle);
  mod.filename = bundle;
  script.runInThisContext()(mod.exports, Module.createRequire(bundle), mod, bundle, dir);
}

if (bundleIsFresh()) runBundle();
else import('../dist/main.js');
