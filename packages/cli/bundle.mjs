// Bundles the built CLI (dist/main.js, from tsc) into dist/bundle/: one file per lazily loaded
// part instead of hundreds of modules, which is most of `berth ps`'s start-up time (see
// docs/benchmarks.md). bin/berth.js runs the bundle when it is newer than dist/main.js.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const packages = dirname(here);

/**
 * The workspace's own modules find files beside them through import.meta.url (the shim's addon,
 * the OpenTelemetry SDK required from the kit, the supervisor and the services' entry points): in
 * the bundle each keeps the URL of the file it was built from.
 */
const keepOwnUrls = {
  name: 'keep-own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\/dist\/.*\.js$/ }, async (args) => {
      if (!args.path.startsWith(`${packages}/`) || args.path.includes('/node_modules/')) return undefined;
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      return {
        contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)),
        loader: 'js',
        resolveDir: dirname(args.path),
      };
    });
  },
};

// Chunk names carry a hash: the chunks of an earlier build would stay beside the new ones.
await rm(join(here, 'dist', 'bundle'), { recursive: true, force: true });
const result = await build({
  entryPoints: [join(here, 'dist', 'main.js')],
  outdir: join(here, 'dist', 'bundle'),
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // CommonJS dependencies (ioredis) call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __berthCreateRequire } from 'node:module'; const require = __berthCreateRequire(import.meta.url);",
  },
  // One OpenTelemetry API in the process: the SDK (required from the kit when an endpoint is set)
  // registers the tracer provider and context manager on the copy it loads; a second copy inlined
  // here would keep its own context keys and lose the CLI's client spans.
  external: ['@opentelemetry/api'],
  plugins: [keepOwnUrls],
  logLevel: 'warning',
  metafile: true,
  absWorkingDir: here,
});

// The workspace files the bundle was made of, relative to dist/bundle: bin/berth.js runs dist/main.js
// instead when one of them is newer than the bundle (a package rebuilt with tsc alone).
const inputs = Object.keys(result.metafile.inputs)
  .map((p) => join(here, p))
  .filter((p) => p.startsWith(`${packages}/`) && !p.includes('/node_modules/'))
  .map((p) => relative(join(here, 'dist', 'bundle'), p));
await writeFile(join(here, 'dist', 'bundle', 'inputs.json'), `${JSON.stringify(inputs)}\n`);
