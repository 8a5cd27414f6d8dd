#!/usr/bin/env node
// CommonJS (bin/package.json): an ES module entry point costs every command ~7 ms more to start.
const {
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} = require('node:fs');
// The loader's Module class, as require('node:module') exports it, without loading that module
// (it loads the ES module loader and source maps with it: 0.4-2 ms of `berth --version`).
const Module = module.constructor;
const { join } = require('node:path');
const vm = require('node:vm');

// The bundle (dist/bundle/berth.cjs, built by `pnpm build` after tsc) starts several times faster
// than the hundreds of modules of dist/. It runs unless one of the files it was made of is newer
// (a package rebuilt with tsc alone): then the modules of dist/ run, so a stale bundle never does.
// A few commands have a bundle of their own (inputs.json's `commands`: `ps.cjs`, `help.cjs` for
// `--help` and `--version`), holding only what they can run.
const dir = join(__dirname, '..', 'dist', 'bundle', '/');
const mtime = (path) => statSync(path, { throwIfNoEntry: false })?.mtimeMs;
// A build restored from turbo's cache writes the bundle and its inputs within the same moment, in
// any order; a package rebuilt by hand afterwards is seconds newer.
const SAME_BUILD_MS = 1000;

/**
 * Where the command word of a run (`ps`, `--help`) is, past the global options as main's
 * splitGlobalOptions takes them (`-n NAME`, `--namespace=NAME`, `-nNAME`, `--trace`): its index
 * (argv.length when there is none), or -1 when a global option lacks its value.
 */
function commandAt(argv) {
  let i = 0;
  for (;;) {
    const a = argv[i];
    if (a === '--trace') i++;
    else if (a === '-n' || a === '--namespace') {
      if (argv[i + 1] === undefined) return -1;
      i += 2;
    } else if (a !== undefined && /^(-n.|--namespace=)/.test(a)) i++;
    else return i;
  }
}

/** dist/bundle/inputs.json (which files each bundle was made of, which word runs which), read once. */
let inputsJson;
const bundleInputs = () => (inputsJson ??= JSON.parse(readFileSync(`${dir}inputs.json`, 'utf8')));

/** True when none of the files bundle `name` (built at `built`) was made of is newer than it. */
function fresh(name, built) {
  const files = bundleInputs().inputs[name];
  return files?.every((p) => (mtime(dir + p) ?? Number.POSITIVE_INFINITY) <= built + SAME_BUILD_MS) === true;
}

/**
 * The bundle to run for these arguments, its code cache's name, and whether this run may write
 * that cache; undefined when the bundle is stale.
 */
function freshBundle(argv) {
  try {
    const { commands } = bundleInputs();
    const at = commandAt(argv);
    const word = at < 0 ? undefined : (argv[at] ?? '');
    const own = word === undefined ? undefined : commands[word];
    let name = own ?? 'berth';
    let built = mtime(`${dir}${name}.cjs`);
    if (built === undefined && name !== 'berth') {
      name = 'berth';
      built = mtime(`${dir}${name}.cjs`);
    }
    if (built === undefined || !fresh(name, built)) return undefined;
    const bundle = `${dir}${name}.cjs`;
    // One cache per command word; a word that cannot be a file name shares `_`.
    const key = /^-{0,2}[a-z][a-z0-9-]{0,30}$/.test(word ?? '') ? word : '_';
    // `ps --help` succeeds having run only the usage text: a cache it made would hold none of the
    // listing, and V8, which accepts it, would never have it replaced.
    const rest = at < 0 ? [] : argv.slice(at + 1);
    return { bundle, key, writes: !rest.includes('--help') && !rest.includes('-h') };
  } catch {
    return undefined;
  }
}

/**
 * The code cache in `file`, or undefined when there is none or it cannot be trusted. V8 runs the
 * bytecode in a cache it accepts without looking at the source again, so a cache must be no easier
 * to change than the bundle itself: it is used only when its owner is this user, the bundle's
 * owner or root, and neither its group nor others may write it (a cache written under umask 002,
 * or a file another user put there, is skipped: the command compiles, and writes no cache over
 * it). It is opened without following a symlink and without blocking (a fifo put there). The
 * checks are of the file: trust also rests on its directories, as the bundle's own does
 * (dist/bundle, recreated 0755 by every build, and its cache/, made 0755 by the first run).
 */
function trustedCache(file, bundleUid) {
  let fd;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return { data: undefined, replace: true };
  }
  try {
    const st = fstatSync(fd);
    const owner = st.uid === 0 || st.uid === bundleUid || st.uid === process.geteuid?.();
    if (!st.isFile() || !owner || (st.mode & 0o022) !== 0) return { data: undefined, replace: false };
    return { data: readFileSync(fd), replace: false };
  } catch {
    return { data: undefined, replace: false };
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs the bundle with V8's code cache (Node 20 has no module compile cache of its own): compiling
 * its 1 MB is a third of a short command's CPU time. One cache per command (`ps`, `images`...),
 * each holding the functions that command ran: a cache of all of them would cost `--version` more
 * to load than it saves. V8 rejects a cache made for another source, Node or flags; it is then
 * made anew at exit. It is made by a run that succeeded (exit code 0) only, and not by one asked
 * for a command's help: a `berth ps` that found no NATS runs none of the listing, and a cache
 * made by it would leave the listing to be compiled on every later run. A cache that cannot be
 * written (a read-only install) only costs speed. Its directory and files are written readable
 * by all and writable by this user only.
 */
function runBundle({ bundle, key, writes }) {
  // The bundle is ASCII (bundle.mjs makes sure): latin1 is the cheapest exact decoding.
  const source = readFileSync(bundle, 'latin1');
  const cacheFile = `${dir}cache/${key}.bin`;
  const cache = trustedCache(cacheFile, statSync(bundle).uid);
  const cachedData = cache.data;
  const script = new vm.Script(Module.wrap(source), { filename: bundle, cachedData });
  if (writes && (cachedData === undefined ? cache.replace : script.cachedDataRejected === true)) {
    process.once('exit', (code) => {
      if (code !== 0) return;
      try {
        mkdirSync(`${dir}cache`, { recursive: true, mode: 0o755 });
        const tmp = `${cacheFile}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
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

// The commands the `berth up` supervisor can run are sent to it by native/berth.c (dist/berth,
// the `berth` setup.sh installs), which runs this file for the others and for what it refuses.
const argv = process.argv.slice(2);
const bundle = freshBundle(argv);
if (bundle) runBundle(bundle);
else import('../dist/main.js');
