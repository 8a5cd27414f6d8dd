import { execFile } from 'node:child_process';
import {
  chownSync,
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

// The launcher (bin/berth.js) asking a supervisor to run a command, against a stand-in supervisor
// on a control socket: what it sends, what it prints, and when it runs the command itself. The
// supervisor's side is served.test.ts and the e2e stack test.
const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const json = JSONCodec<unknown>();
const node = 'binserved';
let root: string;
let bin: string;
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
  bin = join(root, 'bin', 'berth.js');
  runRoot = join(root, 'run');
  mkdirSync(runRoot);
  // The launcher's own run lists this NATS's one (empty) image-service.
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

/** A stand-in supervisor: `answer` gets each request and its socket. */
async function supervisor(answer: (req: Record<string, unknown>, sock: Socket) => void): Promise<Server> {
  const path = join(runRoot, 'supervisor.sock');
  rmSync(path, { force: true });
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) answer(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>, sock);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

const line = (l: object) => `${JSON.stringify(l)}\n`;

/** Runs the launcher copy in this test's installation. */
function berth(args: string[], extra: NodeJS.ProcessEnv = {}) {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  Object.assign(env, { BERTH_NATS_URL: nats.url, BERTH_NODE_ID: node, BERTH_RUN_ROOT: runRoot, ...extra });
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { encoding: 'utf8', env, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr }),
    );
  });
}

const LOCAL_LISTING = /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n$/;

describe('the launcher and a supervisor serving commands', () => {
  it('prints what the supervisor sends and exits with its code, having sent argv, env and the build', async () => {
    const seen: Record<string, unknown>[] = [];
    const server = await supervisor((req, sock) => {
      seen.push(req);
      sock.end(
        line({ type: 'accepted' }) +
          line({ type: 'out', data: 'served out\n' }) +
          line({ type: 'err', data: 'served err\n' }) +
          line({ type: 'exit', code: 3 }),
      );
    });
    try {
      const r = await berth(['-n', 'ns1', 'images', '-q'], { OTEL_SERVICE_NAME: 'x', UNRELATED: 'y' });
      expect(r).toEqual({ code: 3, stdout: 'served out\n', stderr: 'served err\n' });
      const built = statSync(join(root, 'dist', 'bundle', 'served.cjs')).mtimeMs;
      expect(seen).toEqual([
        {
          op: 'run',
          argv: ['-n', 'ns1', 'images', '-q'],
          env: {
            BERTH_NATS_URL: nats.url,
            BERTH_NODE_ID: node,
            BERTH_RUN_ROOT: runRoot,
            OTEL_SERVICE_NAME: 'x',
          },
          bundleMtimeMs: built,
        },
      ]);
    } finally {
      server.close();
    }
  });

  it('runs the command itself when refused, answered as by an older supervisor, cut off early or not answered', async () => {
    const answers: ((sock: Socket) => void)[] = [
      (sock) => sock.end(line({ type: 'refused', reason: 'not the same build' })),
      (sock) => sock.end(line({ type: 'error', message: 'unknown control op "run"' })),
      (sock) => sock.destroy(),
      (sock) => sock.end(line({ type: 'accepted' })),
      // Never answers (a supervisor whose event loop is stuck): after bin/berth.js SERVE_ANSWER_MS.
      () => undefined,
    ];
    for (const [i, answer] of answers.entries()) {
      const server = await supervisor((_req, sock) => answer(sock));
      try {
        const r = await berth(['images']);
        expect(r.code, `answer ${i}: ${r.stderr}`).toBe(0);
        expect(r.stdout, `answer ${i}`).toMatch(LOCAL_LISTING);
      } finally {
        server.close();
      }
    }
  });

  it('does not ask for commands it must run itself, nor when told not to', async () => {
    let asked = 0;
    const server = await supervisor((_req, sock) => {
      asked++;
      sock.end(line({ type: 'accepted' }) + line({ type: 'exit', code: 9 }));
    });
    try {
      for (const [args, env] of [
        [['--trace', 'images'], {}],
        [['images'], { BERTH_TRACE: '1' }],
        [['images'], { BERTH_CLI_LOCAL: '1' }],
      ] as const) {
        const r = await berth([...args], env);
        expect(r.code, args.join(' ')).toBe(0);
        expect(r.stdout).toMatch(LOCAL_LISTING);
      }
      // A config it must not read first (a directory, a path relative to its directory): the run
      // itself reports it.
      for (const config of [root, 'config.json']) {
        const r = await berth(['images'], { BERTH_CONFIG: config });
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

  it('prints an output of many lines as it comes, in order', async () => {
    const pieces = Array.from(
      { length: 40 },
      (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(64 * 1024 - 3)}\n`,
    );
    const server = await supervisor((_req, sock) => {
      sock.write(line({ type: 'accepted' }));
      for (const data of pieces) sock.write(line({ type: 'out', data }));
      sock.end(line({ type: 'exit', code: 0 }));
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
    const server = await supervisor((_req, sock) =>
      sock.end(line({ type: 'accepted' }) + line({ type: 'out', data: 'REPOSITORY\n' })),
    );
    try {
      const r = await berth(['images']);
      expect(r).toEqual({
        code: 1,
        stdout: 'REPOSITORY\n',
        stderr: 'berth: the berth up supervisor went away before the command finished\n',
      });
    } finally {
      server.close();
    }
  });
});
