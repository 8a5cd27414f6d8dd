import { spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageApi, subjectOf } from '@berth/api';
import { startNats, type TestServer } from '@berth/testing';
import { connect, JSONCodec, type Msg, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVED_COMMANDS } from './served.js';
import { encodeFrame, type ServedLine } from './served-protocol.js';

// The `berth` client (native/berth.c, built to dist/berth) asking a supervisor to run a command,
// against a stand-in supervisor on a control socket: what it sends, what it prints, which signals
// it forwards, and when it runs the command itself (Node on bin/berth.js). The supervisor's side
// is served.test.ts and the e2e stack test.
const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const json = JSONCodec<unknown>();
const node = 'binserved';
let root: string;
let client: string;
let runRoot: string;
let nats: TestServer;
let nc: NatsConnection;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'berth-bin-served-'));
  cpSync(join(pkg, 'bin'), join(root, 'bin'), { recursive: true });
  cpSync(join(pkg, 'dist', 'bundle'), join(root, 'dist', 'bundle'), { recursive: true });
  rmSync(join(root, 'dist', 'bundle', 'cache'), { recursive: true, force: true });
  // The copy's inputs live in the real package: point every freshness list at nothing.
  const meta = JSON.parse(readFileSync(join(pkg, 'dist', 'bundle', 'inputs.json'), 'utf8')) as {
    inputs: Record<string, string[]>;
  };
  const none = Object.fromEntries(Object.keys(meta.inputs).map((name) => [name, []]));
  writeFileSync(join(root, 'dist', 'bundle', 'inputs.json'), JSON.stringify({ ...meta, inputs: none }));
  client = join(root, 'dist', 'berth');
  copyFileSync(join(pkg, 'dist', 'berth'), client);
  runRoot = join(root, 'run');
  mkdirSync(runRoot);
  // The command's own run lists this NATS's one (empty) image-service.
  nats = await startNats({ jetstream: false });
  nc = await connect({ servers: nats.url });
  nc.subscribe(subjectOf(ImageApi, 'list', node), {
    callback: (_e: unknown, m: Msg) => m.respond(json.encode({ images: [] })),
  });
  await nc.flush();
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** One connection to the stand-in supervisor: its request and the lines sent after it. */
interface Conn {
  req: Record<string, unknown>;
  sock: Socket;
  /** The lines after the request but the client's `go`. */
  later: string[];
  /** Whether the client said `go` (after an `A` frame). */
  went: boolean;
  /** Resolves with the next later line. */
  next(): Promise<string>;
}

/** A stand-in supervisor at `path` (the run root's socket by default): `answer` gets each request. */
async function supervisor(
  answer: (c: Conn) => void,
  path = join(runRoot, 'supervisor.sock'),
): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((sock) => {
    let buf = '';
    let conn: Conn | undefined;
    let wake: (() => void) | undefined;
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (c: string) => {
      buf += c;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (conn) {
          if (line === '{"op":"go"}') conn.went = true;
          else conn.later.push(line);
          wake?.();
          continue;
        }
        const later: string[] = [];
        conn = {
          req: JSON.parse(line) as Record<string, unknown>,
          sock,
          later,
          went: false,
          next: async () => {
            while (later.length === 0) await new Promise<void>((r) => (wake = r));
            return later.shift() as string;
          },
        };
        answer(conn);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

const frames = (...lines: ServedLine[]) => Buffer.concat(lines.map(encodeFrame));

/** A stand-in supervisor that accepts each request only after `ms`; `conn` is the last request's. */
async function acceptingAfter(ms: number): Promise<{ server: Server; conn: () => Conn | undefined }> {
  let last: Conn | undefined;
  const server = await supervisor((c) => {
    last = c;
    setTimeout(() => c.sock.write(frames({ type: 'accepted' })), ms);
  });
  return { server, conn: () => last };
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of a run in this test's installation (the client sends all of it). */
function envOf(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    // The command's own run: this test's node.
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
    BERTH_NATS_URL: nats.url,
    BERTH_NODE_ID: node,
    BERTH_RUN_ROOT: runRoot,
    ...extra,
  };
}

/** Runs the client copy; `started` gets its process once spawned. */
function berth(
  args: string[],
  extra: NodeJS.ProcessEnv = {},
  started?: (p: ReturnType<typeof spawn>) => void,
): Promise<Ran> {
  const env = envOf(extra);
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve) => {
    const p = spawn(client, args, { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    started?.(p);
  });
}

const LOCAL_LISTING = /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n$/;
const GONE = 'berth: the berth up supervisor went away before the command finished\n';

describe('the berth client and a supervisor serving commands', () => {
  it('prints what the supervisor sends and exits with its code, having sent argv, env, directory and build', async () => {
    const seen: Record<string, unknown>[] = [];
    const server = await supervisor((c) => {
      seen.push(c.req);
      c.sock.end(
        frames(
          { type: 'accepted' },
          { type: 'out', data: 'served out\n' },
          { type: 'err', data: 'served err \u00e9\n' },
          { type: 'out', data: Buffer.from([0xff, 0x0a]) },
          { type: 'exit', code: 3 },
        ),
      );
    });
    try {
      const args = ['-n', 'ns1', 'images', '-q', 'a "quoted"\\ \u00fc\t\u2603 \ud83d\ude00'];
      const r = await berth(args, { OTEL_SERVICE_NAME: 'x', 'ODD NAME': 'line\nbreak' });
      expect(r).toEqual({
        code: 3,
        signal: null,
        stdout: 'served out\n\ufffd\n',
        stderr: 'served err \u00e9\n',
      });
      const built = statSync(join(root, 'dist', 'bundle', 'served.cjs'), { bigint: true }).mtimeNs;
      expect(seen).toEqual([
        {
          op: 'run',
          argv: args,
          env: envOf({ OTEL_SERVICE_NAME: 'x', 'ODD NAME': 'line\nbreak' }),
          bundleMtimeNs: String(built),
          cwd: root,
        },
      ]);
    } finally {
      server.close();
    }
  });

  it('serves help and version, and the words of served.ts', async () => {
    const asked: unknown[] = [];
    const server = await supervisor((c) => {
      asked.push(c.req.argv);
      c.sock.end(frames({ type: 'accepted' }, { type: 'exit', code: 7 }));
    });
    try {
      const lines = [[], ['--help'], ['-h'], ['help'], ['--version'], ['version'], ['-n', 'x']];
      for (const word of SERVED_COMMANDS) lines.push([word]);
      for (const argv of lines) expect((await berth(argv)).code, argv.join(' ')).toBe(7);
      expect(asked).toEqual(lines);
      // The client's list (native/berth.c) is served.ts's, plus help and version.
      const source = readFileSync(join(pkg, 'native', 'berth.c'), 'utf8');
      const words = /served_words\[\] = \{([^}]*)\}/.exec(source)?.[1] ?? '';
      expect([...words.matchAll(/"([^"]+)"/g)].map((m) => m[1])).toEqual([
        ...SERVED_COMMANDS,
        '--help',
        '-h',
        'help',
        '--version',
        'version',
      ]);
    } finally {
      server.close();
    }
  });

  it('runs the command itself when refused, answered as by an older supervisor, cut off early or not answered', async () => {
    const answers: ((sock: Socket) => void)[] = [
      (sock) => sock.end(frames({ type: 'refused', reason: 'not the same build' })),
      (sock) => sock.end(`${JSON.stringify({ type: 'error', message: 'unknown control op "run"' })}\n`),
      (sock) => sock.end(`${JSON.stringify({ type: 'accepted' })}\n`),
      (sock) => sock.destroy(),
      // A listing taken but gone before it printed anything is run again.
      (sock) => sock.end(frames({ type: 'accepted' })),
      // Never answers (a supervisor whose event loop is stuck): after berth.c's ANSWER_MS.
      () => undefined,
    ];
    for (const [i, answer] of answers.entries()) {
      const server = await supervisor((c) => answer(c.sock));
      try {
        const r = await berth(['images']);
        expect(r.code, `answer ${i}: ${r.stderr}`).toBe(0);
        expect(r.stdout, `answer ${i}`).toMatch(LOCAL_LISTING);
      } finally {
        server.close();
      }
    }
  });

  it('says go once accepted, and never to a supervisor that answered after it gave up', async () => {
    const conns: Conn[] = [];
    const server = await supervisor((c) => {
      conns.push(c);
      c.sock.write(frames({ type: 'accepted' }));
      setTimeout(() => c.sock.end(frames({ type: 'exit', code: 6 })), 100);
    });
    try {
      expect((await berth(['run', 'busybox', 'true'])).code).toBe(6);
      expect(conns[0]?.went).toBe(true);
    } finally {
      server.close();
    }
    // After berth.c's ANSWER_MS: the client has run the command itself by then.
    const { server: slow, conn: late } = await acceptingAfter(2500);
    try {
      const r = await berth(['images']);
      expect(r.stdout).toMatch(LOCAL_LISTING);
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(late()?.went).toBe(false);
      expect(late()?.sock.destroyed || late()?.sock.readableEnded).toBe(true);
    } finally {
      slow.close();
    }
  });

  it('never runs `run` again once the supervisor took it', async () => {
    let asked = 0;
    const server = await supervisor((c) => {
      asked++;
      c.sock.end(frames({ type: 'accepted' }));
    });
    try {
      const r = await berth(['run', '--rm', 'busybox', 'true'], { BERTH_NATS_URL: 'nats://127.0.0.1:9' });
      expect(r).toEqual({ code: 1, signal: null, stdout: '', stderr: GONE });
      expect(asked).toBe(1);
    } finally {
      server.close();
    }
  });

  it('does not ask for commands it must run itself, nor when told not to', async () => {
    let asked = 0;
    const server = await supervisor((c) => {
      asked++;
      c.sock.end(frames({ type: 'accepted' }, { type: 'exit', code: 9 }));
    });
    try {
      for (const [args, env] of [
        [['--trace', 'images'], {}],
        [['images'], { BERTH_TRACE: '1' }],
        [['images'], { BERTH_CLI_LOCAL: '1' }],
        [['rm', '-f', 'x'], {}],
      ] as const) {
        const r = await berth([...args], env);
        expect(r.code, args.join(' ')).not.toBe(9);
      }
      expect((await berth(['images'], { BERTH_CLI_LOCAL: '1' })).stdout).toMatch(LOCAL_LISTING);
      // JSON carries no bytes that are not UTF-8: such a command line goes as it is, to Node only.
      const sh = spawnSync('/bin/sh', ['-c', `exec "$0" images --bogus "$(printf 'f\\377')"`, client], {
        env: envOf(),
        encoding: 'latin1',
      });
      expect(sh.status).toBe(2);
      expect(sh.stderr).toContain("Unknown option '--bogus'");
      // A config it must not read first (a directory, a path relative to its directory): the run
      // itself reports it.
      for (const config of [root, 'config.json']) {
        const r = await berth(['images'], { BERTH_CONFIG: config, BERTH_RUN_ROOT: undefined });
        expect(r.code, config).toBe(2);
        expect(r.stderr, config).toMatch(/config file/);
      }
      // A socket neither root's nor this user's gets no command line and no environment.
      const socket = join(runRoot, 'supervisor.sock');
      chownSync(socket, 65534, 65534);
      expect((await berth(['images'])).stdout).toMatch(LOCAL_LISTING);
      expect(asked).toBe(0);
      chownSync(socket, 0, 0);
      expect((await berth(['images'])).code).toBe(9);
      expect(asked).toBe(1);
    } finally {
      server.close();
    }
  });

  it("finds the socket through the config file's runRoot, as the config does", async () => {
    const other = join(root, 'other run');
    mkdirSync(other, { recursive: true });
    let asked = 0;
    const server = await supervisor(
      (c) => {
        asked++;
        c.sock.end(frames({ type: 'accepted' }, { type: 'exit', code: 4 }));
      },
      join(other, 'supervisor.sock'),
    );
    const config = join(root, 'config.json');
    const withConfig = (text: string) => {
      writeFileSync(config, text);
      return berth(['images'], { BERTH_CONFIG: config, BERTH_RUN_ROOT: undefined });
    };
    try {
      const escaped = JSON.stringify(other).replaceAll('/', '\\/').replace('r', '\\u0072');
      for (const text of [
        JSON.stringify({ runRoot: other }),
        `{"nodeId":"x","services":{"shim":{"a":[1,{"b":"}"}]}},"runRoot":${escaped}}`,
        // JSON.parse keeps the last of two.
        `{"runRoot":"/nowhere","runRoot":${JSON.stringify(other)}}\n`,
      ])
        expect((await withConfig(text)).code, text).toBe(4);
      expect(asked).toBe(3);
      // What it cannot read as JSON.parse would, or no absolute path, is left to the command's own run.
      for (const text of [
        '{"runRoot":7}',
        `{"runRoot":${JSON.stringify(other)}`,
        '{"runRoot":"\\ud800"}',
        '{"runRoot":"run"}',
      ])
        expect((await withConfig(text)).code, text).not.toBe(4);
      expect(asked).toBe(3);
    } finally {
      server.close();
      rmSync(config, { force: true });
    }
  });

  it('prints an output of many pieces as it comes, in order', async () => {
    const pieces = Array.from(
      { length: 40 },
      (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(64 * 1024 - 3)}\n`,
    );
    const server = await supervisor((c) => {
      c.sock.write(frames({ type: 'accepted' }));
      for (const data of pieces) c.sock.write(frames({ type: 'out', data }));
      c.sock.end(frames({ type: 'exit', code: 0 }));
    });
    try {
      const r = await berth(['images']);
      expect(r.code).toBe(0);
      expect(r.stdout === pieces.join('')).toBe(true);
    } finally {
      server.close();
    }
  });

  it('says so when the supervisor goes away after printing part of the output', async () => {
    const server = await supervisor((c) =>
      c.sock.end(frames({ type: 'accepted' }, { type: 'out', data: 'REPOSITORY\n' })),
    );
    try {
      expect(await berth(['images'])).toEqual({
        code: 1,
        signal: null,
        stdout: 'REPOSITORY\n',
        stderr: GONE,
      });
    } finally {
      server.close();
    }
  });

  it('forwards its signals while the command takes them, and is ended by them otherwise', async () => {
    // Taken: SIGINT and SIGTERM reach the command, which then exits.
    let conn: Conn | undefined;
    const server = await supervisor((c) => {
      conn = c;
      c.sock.write(
        frames({ type: 'accepted' }, { type: 'signals', taken: true }, { type: 'out', data: 'up\n' }),
      );
    });
    try {
      const got: string[] = [];
      const r = await berth(['run', 'busybox', 'sleep', '9'], {}, (p) => {
        p.stdout?.once('data', async () => {
          p.kill('SIGINT');
          got.push(await (conn as Conn).next());
          p.kill('SIGTERM');
          got.push(await (conn as Conn).next());
          conn?.sock.end(frames({ type: 'signals', taken: false }, { type: 'exit', code: 130 }));
        });
      });
      expect(r).toEqual({ code: 130, signal: null, stdout: 'up\n', stderr: '' });
      expect(got.map((l) => JSON.parse(l))).toEqual([
        { op: 'signal', signal: 'SIGINT' },
        { op: 'signal', signal: 'SIGTERM' },
      ]);
    } finally {
      server.close();
    }
    // Before the answer: the command is never told go, and the client ends by the signal.
    const { server: slow, conn: early } = await acceptingAfter(300);
    try {
      const r = await berth(['run', 'busybox', 'true'], {}, (p) => setTimeout(() => p.kill('SIGINT'), 100));
      expect(r).toMatchObject({ code: null, signal: 'SIGINT' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(early()?.went).toBe(false);
    } finally {
      slow.close();
    }
    // Not taken (a listing, or `run` before it waits on its container): as the command run here.
    const held = await supervisor((c) =>
      c.sock.write(frames({ type: 'accepted' }, { type: 'out', data: 'up\n' })),
    );
    try {
      const r = await berth(['images'], {}, (p) => p.stdout?.once('data', () => p.kill('SIGINT')));
      expect(r).toMatchObject({ code: null, signal: 'SIGINT', stdout: 'up\n' });
    } finally {
      held.close();
    }
  });
});
