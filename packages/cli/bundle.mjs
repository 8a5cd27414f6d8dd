// Bundles the built CLI (dist/main.js, from tsc) into one CommonJS file, dist/bundle/berth.cjs,
// instead of hundreds of modules: most of `berth ps`'s start-up time was Node resolving, reading and
// compiling them (see docs/benchmarks.md). CommonJS because bin/berth.js compiles it with a V8 code
// cache (vm.Script cachedData), which Node 20's ES module loader cannot use. Modules a command
// imports lazily (`await import(...)`) stay lazy: esbuild runs their top level on first import.
// bin/berth.js runs the bundle when it is not older than the files it was made of.
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { COMMAND_BUNDLES, cutImports, lazyNatsBuiltins } from './bundle-narrow.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const packages = dirname(here);
const out = join(here, 'dist', 'bundle');
/** The bundle's function making a file URL from a path relative to the bundle's directory. */
const BUNDLE_URL = '__berthFileUrl';
/** The bundle's name for the loader's Module class (its own module object's constructor). */
const MODULE_CLASS = '__berthModuleClass';

/**
 * The workspace's own modules find files beside them through import.meta.url (the shim's addon,
 * the OpenTelemetry SDK required from the kit, the supervisor and the services' entry points): in
 * the bundle each gets the URL of the file it was built from, made at run time from the bundle's
 * own directory and the file's path relative to it. An absolute path of the building checkout
 * would point a bundle restored from turbo's cache into another worktree (or a deleted one).
 */
const keepOwnUrls = {
  name: 'keep-own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\/dist\/.*\.js$/ }, async (args) => {
      if (!args.path.startsWith(`${packages}/`) || args.path.includes('/node_modules/')) return undefined;
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      return {
        contents: text.replaceAll(
          'import.meta.url',
          `${BUNDLE_URL}(${JSON.stringify(relative(out, args.path))})`,
        ),
        loader: 'js',
        resolveDir: dirname(args.path),
      };
    });
  },
};

/**
 * One OpenTelemetry API in the process, loaded without Node's module resolution: the SDK (required
 * from the kit's directory when an endpoint is set) must register its tracer provider and context
 * manager on the very API the CLI's spans use, or they are lost (each copy has its own proxy
 * tracer provider). Left external, the API's 50 CommonJS files cost every command ~25 ms to
 * resolve and compile. So the API is bundled (and code-cached like the rest), and the copy in the
 * bundle is put in require's cache under the file name the SDK's require resolves to, which makes
 * it the SDK's API as well.
 */
const oneOtelApi = {
  name: 'one-opentelemetry-api',
  setup(b) {
    const fromKit = createRequire(join(packages, 'kit', 'dist', 'telemetry.js'));
    const sdk = fromKit.resolve('@opentelemetry/sdk-trace-base');
    const file = createRequire(sdk).resolve('@opentelemetry/api');
    if (fromKit.resolve('@opentelemetry/api') !== file)
      throw new Error(
        `bundle.mjs: the kit and the OpenTelemetry SDK resolve two different @opentelemetry/api`,
      );
    // The virtual module's name is relative: esbuild writes it into the bundle.
    b.onResolve({ filter: /^@opentelemetry\/api$/ }, () => ({
      path: relative(here, file),
      namespace: 'otel-api',
    }));
    b.onLoad({ filter: /.*/, namespace: 'otel-api' }, () => ({
      contents: [
        `const api = require(${JSON.stringify(file)});`,
        // The loader's Module class, as the bundle's own module object has it: require('node:module')
        // loads the ES module loader and source maps with it (~1 ms of every command).
        `const Module = ${MODULE_CLASS};`,
        // Where the SDK's require finds the API in the checkout the bundle runs from.
        `const file = require('node:path').resolve(__dirname, ${JSON.stringify(relative(out, file))});`,
        'if (!Module._cache[file]) {',
        '  const m = new Module(file);',
        '  m.filename = file;',
        '  m.paths = Module._nodeModulePaths(require("node:path").dirname(file));',
        '  m.loaded = true;',
        '  m.exports = api;',
        '  Module._cache[file] = m;',
        '}',
        'module.exports = api;',
      ].join('\n'),
      loader: 'js',
      resolveDir: dirname(file),
    }));
  },
};

/**
 * The contracts' index (`@berth/api`) as a module of getters: each name loads the contract module
 * that defines it on first use. Importing the index builds the zod schemas of every service
 * (~25 ms); `berth images` needs the image contract only, `berth ps` not the image's or CRI's.
 * Each contract module still runs once, so every name keeps one identity (BerthError, the XApi
 * objects). A CommonJS module, so the bundle reads its names at each use, not at import.
 */
const lazyContracts = {
  name: 'lazy-contracts-index',
  async setup(b) {
    const dist = join(packages, 'api', 'dist');
    const index = join(dist, 'index.js');
    const names = {};
    for (const m of (await readFile(index, 'utf8')).matchAll(/export \* from '(\.\/[\w-]+\.js)';/g)) {
      const file = join(dist, m[1]);
      for (const name of Object.keys(await import(pathToFileURL(file).href))) names[name] = file;
    }
    b.onResolve({ filter: /^@berth\/api$/ }, () => ({
      path: relative(here, index),
      namespace: 'lazy-contracts',
    }));
    // The getters sit on the exports' prototype, not on the exports: each module importing the
    // index gets esbuild's ES module view of it (`__toESM`), a new object with the same prototype
    // and a copy of every own property; ~190 copied getters per importer cost `berth ps` ~4 ms.
    b.onLoad({ filter: /.*/, namespace: 'lazy-contracts' }, () => ({
      // Each contract module's exports are looked up once: in the bundle, require() of an ES
      // module builds a new CommonJS view of all its exports at every call.
      contents: [
        'const names = Object.create(null);',
        ...[...new Set(Object.values(names))].map(
          (file, i) => `let m${i}; const load${i} = () => (m${i} ??= require(${JSON.stringify(file)}));`,
        ),
        ...Object.entries(names).map(
          ([name, file]) =>
            `Object.defineProperty(names, ${JSON.stringify(name)}, { enumerable: true, get: () => load${[...new Set(Object.values(names))].indexOf(file)}()[${JSON.stringify(name)}] });`,
        ),
        'module.exports = Object.create(names);',
      ].join('\n'),
      loader: 'js',
      resolveDir: dist,
    }));
  },
};

/** Builds one CommonJS bundle of dist/<entry> (main.js) as dist/bundle/<name>.cjs, ASCII only. */
async function bundle(name, extraPlugins, entry = 'main.js') {
  const result = await build({
    entryPoints: [join(here, 'dist', entry)],
    outfile: join(out, `${name}.cjs`),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    // bin/berth.js runs the bundle as a vm.Script (for its code cache), where import() has no
    // loader ("A dynamic import callback was not specified"): every import() becomes a require()
    // (the OTLP exporter's node:http, loaded only when an endpoint is set).
    supported: { 'dynamic-import': false },
    plugins: [...extraPlugins, oneOtelApi, lazyContracts, lazyNatsBuiltins, keepOwnUrls],
    // "use strict" first: a banner before esbuild's own directive would turn that into a plain string.
    banner: {
      js: `"use strict";\nvar ${BUNDLE_URL} = (rel) => require('node:url').pathToFileURL(require('node:path').resolve(__dirname, rel)).href;\nvar ${MODULE_CLASS} = module.constructor;`,
    },
    charset: 'ascii',
    logLevel: 'warning',
    metafile: true,
    absWorkingDir: here,
  });
  // bin/berth.js reads the bundle as latin1, the fastest exact decoding of ASCII (a UTF-8 read of
  // a file with one non-ASCII character makes V8 hold it as 4 MB of UTF-16). esbuild escapes
  // non-ASCII in strings and regular expressions; what is left is in comments, replaced here.
  const file = join(out, `${name}.cjs`);
  const text = await readFile(file, 'utf8');
  const ascii = text
    .split('\n')
    .map((line, i) => {
      if (/^[ -~\t\r]*$/.test(line)) return line;
      if (!/^\s*(\/\/|\*|\/\*)/.test(line))
        throw new Error(
          `bundle.mjs: ${name}.cjs:${i + 1} has a non-ASCII or control character outside a comment`,
        );
      return line.replace(/[^\t\r -~]/g, '?');
    })
    .join('\n');
  if (ascii !== text) await writeFile(file, ascii);
  return result;
}

// An earlier build's files (the ES module chunks of the previous layout, a code cache of another
// bundle) must not stay beside the new one.
await rm(out, { recursive: true, force: true });
const result = await bundle('berth', []);
const results = { berth: result };
for (const [name, { keep }] of Object.entries(COMMAND_BUNDLES))
  results[name] = await bundle(name, [cutImports(name, keep)]);
// What the `berth up` supervisor runs commands from for the `berth` client (src/served.ts): the
// listings and `run`.
results.served = await bundle(
  'served',
  [
    cutImports('served', [
      ...COMMAND_BUNDLES.ps.keep,
      ...COMMAND_BUNDLES.images.keep,
      ...COMMAND_BUNDLES.run.keep,
    ]),
  ],
  'served.js',
);

// zod's `z` (`import { z } from 'zod'`) is one object holding all of zod, which a bundle must then
// keep whole: its 40 locales and JSON Schema converters, 600 KB that every command read and
// instantiated (`berth images` ~5 ms CPU). The workspace imports zod as a namespace
// (`import * as z from 'zod'`), whose unused exports esbuild drops; the build fails when a `{ z }`
// import brings them back.
for (const [name, r] of Object.entries(results)) {
  // Files esbuild read but dropped whole are inputs too: only those that put code into the output.
  const whole = Object.values(r.metafile.outputs)
    .flatMap((o) => Object.entries(o.inputs))
    .find(
      ([p, { bytesInOutput }]) =>
        bytesInOutput > 0 &&
        /\/zod\/v4\/(locales\/(?!en\.js|index\.js)|classic\/from-json-schema\.js)/.test(p),
    )?.[0];
  if (whole)
    throw new Error(
      `bundle.mjs: ${name}.cjs holds ${whole}: some module imports zod's \`z\` object (use \`import * as z from 'zod'\`)`,
    );
}

// `berth --help`, `--version` and a usage error must not pay for zod, NATS or the contracts: a
// command table importing them at the top (instead of in its `run`) fails the build, not the
// benchmark. What main.js imports statically runs on every start; dynamic imports run on demand.
const heavy = [/\/node_modules\/.*\/(zod|nats|nkeys\.js|ioredis)\//, /\/api\/dist\/(index|contract)\.js$/];
const inputs = result.metafile.inputs;
const eager = new Set();
const todo = [relative(here, join(here, 'dist', 'main.js'))];
while (todo.length > 0) {
  const file = todo.pop();
  if (eager.has(file)) continue;
  eager.add(file);
  if (heavy.some((re) => re.test(file)))
    throw new Error(
      `bundle.mjs: ${file} is loaded by every berth command (imported statically from main.js)`,
    );
  for (const i of inputs[file]?.imports ?? [])
    if (i.kind === 'import-statement' && !i.external) todo.push(i.path);
}

// The workspace files each bundle was made of, relative to dist/bundle: bin/berth.js runs
// dist/main.js instead when one of them is newer than the bundle (a package rebuilt with tsc
// alone). Per bundle, so `--version` checks its 15 files, not the whole CLI's ~120 (2 ms).
const own = (r) =>
  Object.keys(r.metafile.inputs)
    // Virtual modules (`lazy-contracts:...`, `otel-api:...`) are no files; what they load is listed.
    .filter((p) => !/^[\w-]+:/.test(p))
    .map((p) => join(here, p))
    .filter((p) => p.startsWith(`${packages}/`) && !p.includes('/node_modules/'))
    .map((p) => relative(out, p));
const inputsOf = Object.fromEntries(Object.entries(results).map(([name, r]) => [name, own(r)]));
// And which bundle runs which command word (bin/berth.js runs berth.cjs for every other word).
const commands = Object.fromEntries(
  Object.entries(COMMAND_BUNDLES).flatMap(([name, { words }]) => words.map((w) => [w, name])),
);
await writeFile(join(out, 'inputs.json'), `${JSON.stringify({ inputs: inputsOf, commands })}\n`);
// Made anew above under the builder's umask: bin/berth.js trusts the bundle and the code caches
// in this directory, so only its owner may write it, whatever that umask was.
await chmod(out, 0o755);
