// esbuild plugins of bundle.mjs that narrow what a CLI bundle loads: nats.js without the Node
// built-ins the CLI does not need at load, and the per-command bundles' cut dynamic imports.
import { readFile } from 'node:fs/promises';
import { dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * nats.js as the CLI uses it, without the Node built-ins it loads at the top for paths the CLI
 * does not take: its Node transport requires `tls` (6 modules, ~3 ms) and `dns` for every
 * connection, though only a TLS server or a cluster's host names need them; its index makes Node
 * build the web streams and Web Crypto (`typeof globalThis.ReadableStream`, `.crypto`: polyfill
 * checks Node 20 always passes), and its inbox names' random prefix takes Web Crypto's
 * getRandomValues (~3 ms to load) where node:crypto, loaded anyway, fills it as randomly. Here
 * `tls` and `dns` load on first use, the checks are dropped, and randomFillSync fills the prefix.
 * A socket this transport did not make with tls.connect is no TLSSocket, so `instanceof` is
 * false until `tls` is loaded. Likewise nkeys.js (with tweetnacl, whose tables take ~4 ms to build
 * at load) is loaded when an nkey or a creds file first signs a challenge, and the object store's
 * SHA-256 (~2.5 ms) when it first hashes: `berth ps` uses neither. (Its parser needs nothing:
 * it already jumps over a message's payload when it reads the MSG line.) The build fails when
 * nats.js changes these lines.
 */
export const lazyNatsBuiltins = {
  name: 'lazy-nats-builtins',
  setup(b) {
    const edits = {
      'lib/src/node_transport.js': [
        [
          'const tls_1 = require("tls");',
          'let tlsModule; const tls_1 = { get connect() { return (tlsModule ??= require("tls")).connect; }, get TLSSocket() { return tlsModule ? tlsModule.TLSSocket : class NoTlsYet {}; } };',
        ],
        [
          'const dns = require("dns");',
          'let dnsModule; const dns = { resolve4: (...a) => (dnsModule ??= require("dns")).resolve4(...a), resolve6: (...a) => (dnsModule ??= require("dns")).resolve6(...a) };',
        ],
      ],
      'lib/src/mod.js': [
        ['if (typeof globalThis.ReadableStream === "undefined") {', 'if (false) {'],
        ['if (typeof globalThis.crypto === "undefined") {', 'if (false) {'],
      ],
      'lib/nats-base-client/nkeys.js': [
        [
          'exports.nkeys = require("nkeys.js");',
          'Object.defineProperty(exports, "nkeys", { enumerable: true, get: () => require("nkeys.js") });',
        ],
      ],
      'lib/jetstream/objectstore.js': [
        [
          'const js_sha256_1 = require("../nats-base-client/js-sha256");',
          'const js_sha256_1 = { get sha256() { return require("../nats-base-client/js-sha256").sha256; } };',
        ],
      ],
      'lib/nats-base-client/nuid.js': [
        [
          'if ((_a = globalThis === null || globalThis === void 0 ? void 0 : globalThis.crypto) === null || _a === void 0 ? void 0 : _a.getRandomValues) {\n        globalThis.crypto.getRandomValues(a);',
          'if (true) {\n        require("crypto").randomFillSync(a);',
        ],
      ],
    };
    b.onLoad(
      {
        filter:
          /\/node_modules\/nats\/lib\/(src\/node_transport|src\/mod|nats-base-client\/(nuid|nkeys)|jetstream\/objectstore)\.js$/,
      },
      async (args) => {
        let text = await readFile(args.path, 'utf8');
        const rel = args.path.slice(
          args.path.lastIndexOf('/node_modules/nats/') + '/node_modules/nats/'.length,
        );
        for (const [from, to] of edits[rel] ?? []) {
          if (text.split(from).length !== 2)
            throw new Error(`bundle.mjs: nats ${rel} no longer has exactly one ${JSON.stringify(from)}`);
          text = text.replace(from, to);
        }
        if (rel.endsWith('objectstore.js') && /\bjs_sha256_1\.(?!sha256\b)\w+/.test(text))
          throw new Error(`bundle.mjs: nats ${rel} uses more of js-sha256 than lazyNatsBuiltins covers`);
        if (
          rel.endsWith('node_transport.js') &&
          /\b(tls_1|dns)\.(?!connect\b|TLSSocket\b|resolve4\b|resolve6\b)\w+/.test(text)
        )
          throw new Error(`bundle.mjs: nats ${rel} uses more of tls or dns than lazyNatsBuiltins covers`);
        return { contents: text, loader: 'js', resolveDir: dirname(args.path) };
      },
    );
  },
};

/**
 * Bundles for single commands, beside the whole CLI (berth.cjs): bin/berth.js runs `<name>.cjs`
 * for the command words listed, so `berth ps` reads, compiles from cache and instantiates only
 * what `ps` can run (the whole bundle's 1.9 MB cost ~15 ms more CPU per start than `--version`
 * alone needs). Each is built from the same dist/main.js; what differs is which dynamic imports it
 * holds: `keep` names the modules the command tables (`dist/commands/`, the trace and snapshot
 * tables) may load in it, and every other import() of a table becomes a module that throws (no
 * such command runs there: bin/berth.js picks the bundle by the command word, as main does).
 * `keep: null` cuts every dynamic import: help, version and usage errors load nothing lazily.
 * A command added under one of these words (`images prune`) whose run loads another table import
 * must add it to `keep`; bin.test.ts runs `ps` and `images` from their bundles.
 */
export const COMMAND_BUNDLES = {
  help: { words: ['', '--help', '-h', 'help', '--version', 'version'], keep: null },
  ps: { words: ['ps'], keep: ['dist/containers/commands.js'] },
  images: { words: ['images'], keep: ['dist/images/commands.js'] },
  run: { words: ['run'], keep: ['dist/containers/run.js'] },
};
const TABLES = /^dist\/(commands\/[\w-]+|trace\/commands|snapshots\/commands)\.js$/;

/** The plugin cutting a command bundle's dynamic imports (see COMMAND_BUNDLES). */
export const cutImports = (name, keep) => ({
  name: 'cut-dynamic-imports',
  setup(b) {
    b.onResolve({ filter: /.*/ }, async (args) => {
      if (args.kind !== 'dynamic-import' || args.pluginData === 'cut-check') return undefined;
      const importer = relative(here, args.importer);
      if (keep !== null && !TABLES.test(importer)) return undefined;
      const r = await b.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: 'cut-check',
      });
      const target = relative(here, r.path);
      if (keep?.includes(target)) return undefined;
      return { path: `${name}:${target}`, namespace: 'cut' };
    });
    b.onLoad({ filter: /.*/, namespace: 'cut' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`berth: ${args.path} is not in this command's bundle (packages/cli/bundle.mjs COMMAND_BUNDLES)`)});`,
      loader: 'js',
    }));
  },
});
