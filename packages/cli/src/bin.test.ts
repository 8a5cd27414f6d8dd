import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ImageApi, subjectOf, TaskApi } from '@berth/api';
import { BERTH_VERSION } from '@berth/api/version';
import { startNats } from '@berth/testing';
import { connect, JSONCodec, type Msg } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// bin/berth.js as a user runs it, on a copy of the built package (bin and dist/bundle), so the
// test owns its code cache: the bundle, and the code cache of each command beside it.
const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
let root: string;
let bin: string;
let cache: string;
const berth = (...args: string[]) => execFileSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
/** A run that lets this process answer its requests meanwhile (execFileSync would block it). */
const run = (args: string[], env: NodeJS.ProcessEnv) =>
  promisify(execFile)(process.execPath, [bin, ...args], { encoding: 'utf8', env });
const json = JSONCodec<unknown>();

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'berth-bin-'));
  cpSync(join(pkg, 'bin'), join(root, 'bin'), { recursive: true });
  cpSync(join(pkg, 'dist', 'bundle'), join(root, 'dist', 'bundle'), { recursive: true });
  rmSync(join(root, 'dist', 'bundle', 'cache'), { recursive: true, force: true });
  // The copy's inputs live in the real package: point the freshness list at nothing.
  const meta = JSON.parse(readFileSync(join(pkg, 'dist', 'bundle', 'inputs.json'), 'utf8')) as object;
  const none = Object.fromEntries(['berth', ...Object.values(commandBundles())].map((name) => [name, []]));
  writeFileSync(join(root, 'dist', 'bundle', 'inputs.json'), JSON.stringify({ ...meta, inputs: none }));
  bin = join(root, 'bin', 'berth.js');
  cache = join(root, 'dist', 'bundle', 'cache');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** inputs.json's map of command words to the bundles of their own (the rest run berth.cjs). */
const commandBundles = (): Record<string, string> =>
  (
    JSON.parse(readFileSync(join(pkg, 'dist', 'bundle', 'inputs.json'), 'utf8')) as {
      commands: Record<string, string>;
    }
  ).commands;

/** A script running berth.cjs (the whole CLI) without a code cache, as bin/berth.js would. */
const wholeBundle = (dir: string) =>
  `const M = require('node:module'); const f = ${JSON.stringify(join(dir, 'berth.cjs'))};` +
  `process.argv.splice(1, 0, f); const m = new M(f); m.filename = f; m.paths = M._nodeModulePaths(${JSON.stringify(dir)});` +
  `m._compile(require('node:fs').readFileSync(f, 'latin1'), f);`;

describe('bin/berth.js', () => {
  it("runs the bundle after a build: every file the bundle's inputs.json names exists", () => {
    const dir = join(pkg, 'dist', 'bundle');
    const { inputs } = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as {
      inputs: Record<string, string[]>;
    };
    expect(Object.keys(inputs).sort()).toEqual(
      ['berth', 'served', ...new Set(Object.values(commandBundles()))].sort(),
    );
    for (const [name, files] of Object.entries(inputs)) {
      expect(files.length, name).toBeGreaterThan(10);
      // A name that is no file makes bin/berth.js take the bundle for stale and run dist/ instead.
      expect(files.filter((p) => statSync(join(dir, p), { throwIfNoEntry: false }) === undefined)).toEqual(
        [],
      );
    }
  });

  it("names no absolute path of the checkout that built it (turbo's cache restores it elsewhere)", () => {
    for (const name of ['berth', 'served', ...new Set(Object.values(commandBundles()))]) {
      const text = readFileSync(join(pkg, 'dist', 'bundle', `${name}.cjs`), 'latin1');
      const checkout = resolve(pkg, '..', '..');
      expect(text.includes(`${checkout}/`), `${name}.cjs holds ${checkout}/`).toBe(false);
      // Nor a path into any other checkout's packages or node_modules (a bundle built elsewhere).
      const absolute = /["'`](?:file:\/\/)?\/[^"'`\n]*\/(?:packages|node_modules)\/[^"'`\n]*/g;
      expect(text.match(absolute) ?? [], name).toEqual([]);
    }
  });

  it('runs help and version from the small bundle, printing what the whole CLI prints', () => {
    expect(commandBundles()).toMatchObject({ '': 'help', '--help': 'help', '--version': 'help', ps: 'ps' });
    // The whole bundle, as an unknown command word makes bin/berth.js run it.
    const whole = (...args: string[]) => {
      const dir = join(root, 'dist', 'bundle');
      const env = { ...process.env, BERTH_NAMESPACE: '' };
      return execFileSync(process.execPath, ['-e', wholeBundle(dir), '--', ...args], {
        encoding: 'utf8',
        env,
      });
    };
    for (const args of [[], ['--help'], ['-n', 'x', '--trace', 'help'], ['--version'], ['version']])
      expect(berth(...args), args.join(' ')).toBe(whole(...args));
    expect(statSync(join(cache, '--help.bin')).size).toBeGreaterThan(1000);
    // `berth --help` lists the commands in the order localeCompare gives (what it used before).
    const names = [...berth('--help').matchAll(/^ {2}([a-z][a-z -]*?) {2,}/gm)].map((m) => m[1] as string);
    expect(names.length).toBeGreaterThan(40);
    expect(names).toEqual(names.slice().sort((a, b) => a.localeCompare(b)));
  });

  it('runs a command that exports traces (a dynamic import inside the bundle), cached or not', async () => {
    // The bundle runs as a vm.Script, where an import() has no loader: none may be left in it.
    const env = {
      ...process.env,
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
      BERTH_NATS_URL: 'nats://127.0.0.1:9',
    };
    // A NATS whose task-service and image-service list nothing: there `ps` and `images` succeed.
    const nats = await startNats({ jetstream: false });
    const nc = await connect({ servers: nats.url });
    const node = 'bintest';
    const empty = (reply: object) => ({ callback: (_e: unknown, m: Msg) => m.respond(json.encode(reply)) });
    nc.subscribe(subjectOf(TaskApi, 'list-container-summaries'), empty({ containers: [] }));
    nc.subscribe(subjectOf(ImageApi, 'list', node), empty({ images: [] }));
    await nc.flush();
    const listing = { ...process.env, BERTH_NATS_URL: nats.url, BERTH_NODE_ID: node };
    try {
      // `images` and `ps` run from bundles of their own (commandBundles): each holds its command.
      for (const command of ['images', 'ps'])
        for (const round of ['uncached', 'cached']) {
          if (round === 'cached') {
            // `COMMAND --help` succeeds having run only its usage: it makes no cache. A listing
            // that succeeded makes the command's; a failed run none.
            berth(command, '--help');
            expect(existsSync(join(cache, `${command}.bin`)), `${command} --help`).toBe(false);
            await run([command], listing);
            expect(existsSync(join(cache, `${command}.bin`)), `${command} listed`).toBe(true);
          }
          let stderr = '';
          try {
            execFileSync(process.execPath, [bin, command], { encoding: 'utf8', env, stdio: 'pipe' });
          } catch (err) {
            stderr = String((err as { stderr?: string }).stderr);
          }
          expect(stderr, `${command} ${round}`).toMatch(/cannot reach NATS at nats:\/\/127\.0\.0\.1:9/);
          expect(existsSync(join(cache, `${command}.bin`)), `${command} ${round}`).toBe(round === 'cached');
        }
    } finally {
      await nc.close();
      await nats.stop();
    }
    // `run` runs from a bundle of its own too, which connects to NATS before loading the command:
    // the refusal is still the one reported, and the failed run makes no cache.
    let refused = '';
    try {
      execFileSync(process.execPath, [bin, 'run', 'busybox', 'true'], {
        encoding: 'utf8',
        env,
        stdio: 'pipe',
      });
    } catch (err) {
      refused = String((err as { stderr?: string }).stderr);
    }
    expect(refused).toMatch(/cannot reach NATS at nats:\/\/127\.0\.0\.1:9/);
    expect(existsSync(join(cache, 'run.bin'))).toBe(false);
    // A usage error is still reported as one, whatever run's early connect met.
    let usage = '';
    try {
      execFileSync(process.execPath, [bin, 'run'], { encoding: 'utf8', env, stdio: 'pipe' });
    } catch (err) {
      usage = String((err as { stderr?: string }).stderr);
    }
    expect(usage).toBe('berth: an image is required: berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n');
  });

  it("reports run's usage error without waiting for an early connect to a NATS that never answers", async () => {
    // A listener that accepts and never speaks: nats.js waits for its INFO until its connect
    // timeout (~10 s), which the CLI's close once waited out before the error could exit.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as AddressInfo;
    try {
      const env = { ...process.env, BERTH_NATS_URL: `nats://127.0.0.1:${port}` };
      const t0 = Date.now();
      const r = await run(['run'], env).then(
        () => ({ stderr: '', code: 0 }),
        (err: { stderr?: string; code?: number }) => ({ stderr: String(err.stderr), code: err.code }),
      );
      expect(r.stderr).toBe('berth: an image is required: berth run [OPTIONS] IMAGE [COMMAND] [ARG...]\n');
      expect(r.code).toBe(2);
      // Not a speed figure: a bound far below the connect timeout it used to wait out.
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      silent.close();
    }
  });

  it('makes no code at run time: zod is jitless before the config schemas are built', () => {
    // zod compiles a parser per object schema with `new Function` (outside the code cache) unless
    // jitless is set before the schema is made; the kit makes its config schemas at import.
    const preload = join(root, 'count-functions.cjs');
    writeFileSync(
      preload,
      `let n = 0; const F = globalThis.Function;
globalThis.Function = new Proxy(F, { construct: (t, a, nt) => (n++, Reflect.construct(t, a, nt)), apply: (t, th, a) => (n++, Reflect.apply(t, th, a)) });
process.on('exit', () => process.stderr.write('new Function: ' + n + '\\n'));`,
    );
    let stderr = '';
    try {
      execFileSync(process.execPath, ['-r', preload, bin, 'ps'], {
        encoding: 'utf8',
        env: { ...process.env, BERTH_NATS_URL: 'nats://127.0.0.1:9' },
        stdio: 'pipe',
      });
    } catch (err) {
      stderr = String((err as { stderr?: string }).stderr);
    }
    // The config was read and parsed: the run got as far as connecting.
    expect(stderr).toMatch(/cannot reach NATS at nats:\/\/127\.0\.0\.1:9/);
    expect(stderr).toContain('new Function: 0\n');
  });

  it('runs the bundle and keeps one code cache per command, made on the first run', () => {
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    const first = statSync(join(cache, '--version.bin'));
    expect(first.size).toBeGreaterThan(1000);
    // A second run uses it as it is (V8 accepted it: nothing rewritten).
    utimesSync(join(cache, '--version.bin'), 0, 0);
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    expect(statSync(join(cache, '--version.bin')).mtimeMs).toBe(0);
    expect(berth('-n', 'other', '--help')).toContain('Usage: berth [-n NAMESPACE] [--trace] COMMAND');
    expect(statSync(join(cache, '--help.bin')).size).toBeGreaterThan(1000);
  });

  it('writes its caches readable by all, writable by their owner only, whatever the umask', () => {
    rmSync(cache, { recursive: true, force: true });
    execFileSync('sh', ['-c', 'umask 000 && exec "$0" "$1" --version', process.execPath, bin]);
    expect(statSync(cache).mode & 0o777).toBe(0o755);
    expect(statSync(join(cache, '--version.bin')).mode & 0o777).toBe(0o644);
  });

  it('uses no cache that others can write, and writes none over it', () => {
    // Bytes V8 would reject: a cache that was read would be replaced at exit (see below).
    const file = join(cache, '--version.bin');
    writeFileSync(file, Buffer.alloc(4096, 7));
    chmodSync(file, 0o664);
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    expect(readFileSync(file).equals(Buffer.alloc(4096, 7))).toBe(true);
    rmSync(file);
  });

  it.skipIf(process.geteuid?.() !== 0)("uses no cache of another user's (run as root)", () => {
    const file = join(cache, '--version.bin');
    writeFileSync(file, Buffer.alloc(4096, 7), { mode: 0o644 });
    chownSync(file, 65534, 65534);
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    expect(readFileSync(file).equals(Buffer.alloc(4096, 7))).toBe(true);
    rmSync(file);
  });

  it('follows no symlink to a cache and does not block on a fifo put in its place', () => {
    const file = join(cache, '--version.bin');
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    // A link to a cache V8 would accept: not read (the run writes a cache of its own in its place).
    const elsewhere = join(root, 'elsewhere.bin');
    cpSync(file, elsewhere);
    rmSync(file);
    symlinkSync(elsewhere, file);
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    expect(lstatSync(file).isSymbolicLink()).toBe(false);
    rmSync(file);
    execFileSync('mkfifo', [file]);
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    expect(lstatSync(file).isFIFO()).toBe(true);
    rmSync(file);
  });

  it('replaces a cache V8 rejects (another Node, a damaged file) and still answers', () => {
    writeFileSync(join(cache, '--version.bin'), Buffer.alloc(4096, 7));
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
    const again = readFileSync(join(cache, '--version.bin'));
    expect(again.equals(Buffer.alloc(4096, 7))).toBe(false);
    expect(berth('--version')).toBe(`berth ${BERTH_VERSION}\n`);
  });
});
