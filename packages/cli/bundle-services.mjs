// Bundles the entry point of each service `berth up` starts (and of the co-hosted process) into one
// ES module file, dist/services/<name>.mjs, instead of the ~300 modules of dist/ and node_modules:
// each process then holds its code as one script instead of hundreds of module records, source
// strings and module-loader entries, and starts without resolving and reading hundreds of files
// (docs/benchmarks.md, footprint round 3). The supervisor's plan (src/stack/bundles.ts) runs a
// bundle only while none of the workspace files it was made of is newer, so a package rebuilt with
// tsc alone runs from dist/ again and a stale bundle never runs.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const packages = dirname(here);
const out = join(here, 'dist', 'services');

/**
 * What a bundle is made from: each service's dist/main.js, the co-hosted process's entry and the
 * supervisor's.
 */
const ENTRIES = {
  shim: join(packages, 'shim', 'dist', 'main.js'),
  'snapshot-service': join(packages, 'snapshot-service', 'dist', 'main.js'),
  'image-service': join(packages, 'image-service', 'dist', 'main.js'),
  'task-service': join(packages, 'task-service', 'dist', 'main.js'),
  'cri-gateway': join(packages, 'cri-gateway', 'dist', 'main.js'),
  cohosted: join(here, 'dist', 'stack', 'cohosted-main.js'),
  // The supervisor `berth up` forks: its ~100 modules took 110-140 ms of CPU to load before it
  // could start nats-server (src/stack/plan.ts supervisorMain).
  'supervisor-main': join(here, 'dist', 'stack', 'supervisor-main.js'),
};

/** A path from the bundle's directory to `file`, as an import specifier or URL relative to it. */
const fromOut = (file) => {
  const rel = relative(out, file);
  return rel.startsWith('.') ? rel : `./${rel}`;
};

/**
 * The OpenTelemetry SDK packages every service loads when it starts its telemetry and its metrics
 * (the kit requires them at run time, so that the CLI never loads them): ~200 CommonJS files,
 * 2-3 MB of heap and a few hundred ms of every service's start-up to resolve, read and compile one
 * by one. In the bundle they are bundled (still run on first use). The OTLP exporters, loaded only
 * when an endpoint is set, stay run-time loads; all share the one OpenTelemetry API Node loads
 * (runtimeModules).
 */
const SDK = new Map([
  [join(packages, 'kit', 'dist', 'telemetry.js'), ['core', 'sdk-trace-base', 'sdk-trace-node', 'resources']],
  [join(packages, 'kit', 'dist', 'metrics', 'provider.js'), ['sdk-metrics', 'resources']],
]);

/** The kit modules of SDK that bundleSdk has seen: each must be seen, or the SDK stays outside. */
const sdkSeen = new Set();

/** A kit module with its run-time loads of the SDK made requires that esbuild bundles. */
function bundleSdk(file, text) {
  if (SDK.has(file)) sdkSeen.add(file);
  let out = text;
  for (const name of SDK.get(file) ?? []) {
    const call = `load('@opentelemetry/${name}')`;
    if (!out.includes(call)) throw new Error(`bundle-services.mjs: ${file} no longer has ${call}`);
    out = out.replaceAll(call, `require('@opentelemetry/${name}')`);
  }
  // A load left outside is a second copy of that package beside the bundled SDK's (its global
  // state, such as core's error handler, would not be the SDK's): only the exporters, loaded when
  // an endpoint is set, may stay run-time loads.
  for (const m of out.matchAll(/load\(\s*'(@opentelemetry\/[^']+)'/g)) {
    if (!/exporter|otlp/.test(m[1] ?? '')) {
      throw new Error(`bundle-services.mjs: ${file} loads ${m[1]} at run time; add it to SDK`);
    }
  }
  return out;
}

/**
 * The workspace's modules find files beside them through import.meta.url (the shim's and the
 * snapshot-service's addons, the CRI proto, the OpenTelemetry SDK the kit requires on demand). In
 * the bundle each gets the URL of the file it was built from, relative to the bundle, so a checkout
 * that is moved or restored from turbo's cache elsewhere still finds its own files.
 */
const ownUrls = {
  name: 'relative-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\/dist\/.*\.js$/ }, async (args) => {
      if (!args.path.startsWith(`${packages}/`) || args.path.includes('/node_modules/')) return undefined;
      let text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      text = bundleSdk(args.path, text);
      const url = `new URL(${JSON.stringify(fromOut(args.path))}, import.meta.url).href`;
      return {
        contents: text.replaceAll('import.meta.url', url),
        loader: 'js',
        resolveDir: dirname(args.path),
      };
    });
    // CommonJS packages find files through __dirname (ioredis reads its package.json for the
    // client name it sends), which an ES module has not: each gets its own, relative to the bundle.
    b.onLoad({ filter: /\/node_modules\/.*\.c?js$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      if (!/\b__(dirname|filename)\b/.test(text)) return undefined;
      const own = `var __filename = require('node:path').join(berthBundleDir, ${JSON.stringify(relative(out, args.path))}), __dirname = require('node:path').dirname(__filename);`;
      return { contents: `${own}\n${text}`, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

/**
 * Left to Node at run time, by a path relative to the bundle: the OpenTelemetry API, which must be
 * one module for the SDK inside the bundle, the services' spans and the OTLP exporters the kit
 * loads at run time (when an endpoint is set), and packages a service imports on demand only (`await import('undici')` for
 * hosts.toml TLS settings), whose code would otherwise sit in every process unused.
 */
const runtimeModules = {
  name: 'runtime-modules',
  setup(b) {
    const fromKit = createRequire(join(packages, 'kit', 'dist', 'telemetry.js'));
    const otelApi = fromKit.resolve('@opentelemetry/api');
    b.onResolve({ filter: /^@opentelemetry\/api$/ }, () => ({ path: fromOut(otelApi), external: true }));
    b.onResolve({ filter: /^[^./]/ }, async (args) => {
      if (args.kind !== 'dynamic-import' || args.pluginData === 'runtime-modules') return undefined;
      if (args.path.startsWith('node:')) return undefined;
      const r = await b.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: 'runtime-modules',
      });
      if (r.errors.length > 0 || r.external) return undefined;
      return { path: fromOut(r.path), external: true };
    });
  },
};

// Bundles of an earlier build (a service since renamed) must not stay beside the new ones.
await rm(out, { recursive: true, force: true });
for (const [name, entry] of Object.entries(ENTRIES)) {
  const outfile = join(out, `${name}.mjs`);
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // The CommonJS packages inside (ioredis, pino) require Node's built-in modules; berthBundleDir
    // is where their __dirname is relative to (ownUrls).
    banner: {
      js: [
        "import { createRequire as berthCreateRequire } from 'node:module';",
        "import { dirname as berthDirname } from 'node:path';",
        "import { fileURLToPath as berthFileURLToPath } from 'node:url';",
        'const require = berthCreateRequire(import.meta.url);',
        'const berthBundleDir = berthDirname(berthFileURLToPath(import.meta.url));',
      ].join('\n'),
    },
    plugins: [ownUrls, runtimeModules],
    // V8 keeps each script's source for as long as the process runs (functions compile lazily
    // from it): without comments and indentation a bundle is ~30 % smaller, 2.5-3.7 MB less heap
    // per process. Names stay as written, so stack traces and error names read as in
    // the sources (at bundle positions).
    minifyWhitespace: true,
    charset: 'ascii',
    logLevel: 'warning',
    metafile: true,
    absWorkingDir: here,
  });
  // One character outside ASCII anywhere (a legal comment) makes V8 hold the whole source as
  // UTF-16, twice the memory: fail the build rather than the footprint.
  const text = await readFile(outfile, 'latin1');
  const bad = /[^\t\n\r -~]/.exec(text);
  if (bad)
    throw new Error(`bundle-services.mjs: ${name}.mjs has a non-ASCII character at offset ${bad.index}`);
  // The workspace files the bundle was made of, relative to dist/services (see src/stack/bundles.ts).
  const own = Object.keys(result.metafile.inputs)
    .map((p) => join(here, p))
    .filter((p) => p.startsWith(`${packages}/`) && !p.includes('/node_modules/'))
    .map((p) => relative(out, p));
  await writeFile(join(out, `${name}.inputs.json`), `${JSON.stringify(own)}\n`);
}
for (const file of SDK.keys()) {
  if (!sdkSeen.has(file))
    throw new Error(`bundle-services.mjs: ${file} was not bundled; its SDK loads stay outside`);
}
