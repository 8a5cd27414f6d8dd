import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageApi, subjectOf } from '@berth/api';
import { startNats, type TestServer } from '@berth/testing';
import { connect, JSONCodec, type Msg, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CommandServer, type ServedLine } from './served.js';
import type { ServedClient } from './served-protocol.js';

const json = JSONCodec<unknown>();
const dir = mkdtempSync(join(tmpdir(), 'berth-served-'));
const runRoot = join(dir, 'run');
const socket = join(runRoot, 'supervisor.sock');
const node = 'servedtest';
let nats: TestServer;
let nc: NatsConnection;
let server: CommandServer;
/** The reply subject of every list request the fake image-service answered. */
const replies: string[] = [];
/** What the fake image-service lists. */
let listing: object[] = [];
/** Answers the fake image-service holds back while set (a slow service). */
let held: (() => void)[] | undefined;

const IMAGE = {
  name: 'docker.io/library/busybox:1',
  target: {
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: `sha256:${'a'.repeat(64)}`,
    size: 1,
  },
  manifest: {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: `sha256:${'b'.repeat(64)}`,
    size: 2,
  },
  configDigest: `sha256:${'c'.repeat(64)}`,
  config: {
    os: 'linux',
    architecture: 'amd64',
    created: '2020-01-01T00:00:00Z',
    rootfs: { type: 'layers', diff_ids: [] },
  },
  size: 4096,
  labels: {},
  createdAt: '2020-01-01T00:00:00.000Z',
  updatedAt: '2020-01-01T00:00:00.000Z',
};

/** The environment a launcher of this test's installation sends. */
const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  BERTH_NATS_URL: nats.url,
  BERTH_NODE_ID: node,
  BERTH_RUN_ROOT: runRoot,
  BERTH_STATE_ROOT: join(dir, 'state'),
  BERTH_CONFIG: join(dir, 'config.json'),
  ...extra,
});

/** A client as the control socket makes it: confirmed at once, never gone, never behind. */
function client(over: Partial<ServedClient> = {}): ServedClient {
  return {
    confirmed: Promise.resolve(true),
    onSignal: () => () => undefined,
    gone: new Promise<void>(() => undefined),
    drained: () => Promise.resolve(),
    ...over,
  };
}

/** Frames as the tests read them: text output as strings. */
const readable = (lines: ServedLine[]) =>
  lines.map((l) =>
    l.type === 'out' || l.type === 'err' ? { ...l, data: Buffer.from(l.data).toString('utf8') } : l,
  );

/** Every frame the server sends for one request. */
async function serve(
  argv: string[],
  e: Record<string, string> = env(),
  cwd = dir,
  c: ServedClient = client(),
): Promise<ServedLine[]> {
  const lines: ServedLine[] = [];
  await server.serve(
    { argv, env: e, cwd },
    (l) => {
      lines.push(l);
      return true;
    },
    c,
  );
  return readable(lines);
}

/** The text of the frames of one type. */
const text = (lines: ServedLine[], type: 'out' | 'err') =>
  lines.flatMap((l) => (l.type === type ? [String(l.data)] : [])).join('');

/** Waits (bounded) until `check` holds. */
async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

beforeAll(async () => {
  listing = [IMAGE];
  writeFileSync(join(dir, 'config.json'), '{}\n');
  nats = await startNats({ jetstream: false });
  nc = await connect({ servers: nats.url });
  nc.subscribe(subjectOf(ImageApi, 'list', node), {
    callback: (_e: unknown, m: Msg) => {
      replies.push(m.reply ?? '');
      const answer = () => m.respond(json.encode({ images: listing }));
      if (held) held.push(answer);
      else answer();
    },
  });
  await nc.flush();
  server = new CommandServer(socket);
});
afterAll(async () => {
  await server?.close();
  await nc?.close();
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('commands served by the supervisor', () => {
  it('runs a listing with the client environment and sends its output and exit code', async () => {
    const lines = await serve(['images']);
    expect(lines[0]).toEqual({ type: 'accepted' });
    expect(lines.at(-1)).toEqual({ type: 'exit', code: 0 });
    const out = text(lines, 'out');
    expect(out).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n/);
    expect(out).toMatch(/busybox\s+1\s+cccccccccccc\s/);
    expect(lines.some((l) => l.type === 'err')).toBe(false);
  });

  it('serves help and version as the CLI prints them', async () => {
    const help = await serve([]);
    expect(help.at(-1)).toEqual({ type: 'exit', code: 0 });
    expect(text(help, 'out')).toMatch(/^Usage: berth \[-n NAMESPACE\]/);
    expect(text(await serve(['--version']), 'out')).toMatch(/^berth \d+\.\d+\.\d+/);
    expect(text(await serve(['ps', '--help']), 'out')).toMatch(/^Usage: berth ps /);
  });

  it('runs commands at once over one NATS connection, each to its end', async () => {
    const before = replies.length;
    held = [];
    const first = serve(['images']);
    await until(() => replies.length > before);
    // A second client is not kept waiting behind the first.
    const second = serve(['images', '-q']);
    await until(() => replies.length > before + 1);
    for (const answer of held) answer();
    held = undefined;
    expect((await first).at(-1)).toEqual({ type: 'exit', code: 0 });
    expect((await second).at(-1)).toEqual({ type: 'exit', code: 0 });
    expect(text(await second, 'out')).toBe('cccccccccccc\n');
    const seen = replies.slice(before);
    expect(seen).toHaveLength(2);
    // nats.js answers every request of a connection on one inbox subscription (`<inbox>.<n>`).
    const inboxes = new Set(seen.map((r) => r.slice(0, r.lastIndexOf('.'))));
    expect(inboxes.size).toBe(1);
  });

  it('refuses a command past 16 running, which its client then runs itself', async () => {
    const before = replies.length;
    held = [];
    const running = Array.from({ length: 16 }, () => serve(['images', '-q']));
    await until(() => replies.length === before + 16);
    expect(await serve(['images'])).toEqual([{ type: 'refused', reason: 'busy' }]);
    for (const answer of held) answer();
    held = undefined;
    for (const r of await Promise.all(running)) expect(r.at(-1)).toEqual({ type: 'exit', code: 0 });
    expect((await serve(['images', '-q'])).at(-1)).toEqual({ type: 'exit', code: 0 });
  });

  it('sends a failure as the CLI prints it, with its exit code', async () => {
    const down = await serve(['images'], env({ BERTH_NATS_URL: 'nats://127.0.0.1:9' }));
    expect(down.at(-1)).toEqual({ type: 'exit', code: 1 });
    expect(text(down, 'err')).toContain('cannot reach NATS at nats://127.0.0.1:9');
  });

  it("reads run's files in the client's directory", async () => {
    // The create request is refused by no task-service (NATS answers no one): the options are
    // read first, so their errors and the files read show through.
    const missing = await serve(['run', '--env-file', 'nope.env', 'busybox', 'true']);
    expect(missing.at(-1)).toEqual({ type: 'exit', code: 2 });
    expect(text(missing, 'err')).toContain(`cannot read env file "nope.env"`);
    const seccomp = await serve(['run', '--security-opt', 'seccomp=nope.json', 'busybox', 'true']);
    expect(text(seccomp, 'err')).toContain(`cannot read seccomp profile "${join(dir, 'nope.json')}"`);
    const other = join(dir, 'elsewhere');
    mkdirSync(other, { recursive: true });
    const there = await serve(
      ['run', '--security-opt', 'seccomp=nope.json', 'busybox', 'true'],
      env(),
      other,
    );
    expect(text(there, 'err')).toContain(`cannot read seccomp profile "${join(other, 'nope.json')}"`);
  });

  it('runs nothing for a client that hung up before it said go', async () => {
    const before = replies.length;
    const lines = await serve(['images'], env(), dir, client({ confirmed: Promise.resolve(false) }));
    expect(lines).toEqual([{ type: 'accepted' }]);
    expect(replies.length).toBe(before);
  });

  it('writes no more while the client is behind, and sends the exit after all the output', async () => {
    listing = Array.from({ length: 1000 }, (_, i) => ({
      ...IMAGE,
      name: `docker.io/library/busybox-${i}:1`,
    }));
    try {
      let behind = true;
      let release: () => void = () => undefined;
      const drained = new Promise<void>((r) => {
        release = r;
      });
      const lines: ServedLine[] = [];
      const done = server.serve(
        { argv: ['images'], env: env(), cwd: dir },
        (l) => {
          lines.push(l);
          return !behind;
        },
        client({ drained: () => drained }),
      );
      await until(() => lines.some((l) => l.type === 'out'));
      await new Promise((r) => setTimeout(r, 50));
      // The table went out in one write the client has not taken: the exit waits for it.
      expect(lines.some((l) => l.type === 'exit')).toBe(false);
      behind = false;
      release();
      await done;
      expect(lines.at(-1)).toEqual({ type: 'exit', code: 0 });
      expect(text(readable(lines), 'out').split('\n')).toHaveLength(1002);
    } finally {
      listing = [IMAGE];
    }
  });

  it('gives up on a client that neither says go nor hangs up', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const before = replies.length;
      const pending = serve(
        ['images'],
        env(),
        dir,
        client({ confirmed: new Promise<boolean>(() => undefined) }),
      );
      await vi.advanceTimersByTimeAsync(10_000);
      expect(await pending).toEqual([{ type: 'accepted' }]);
      expect(replies.length).toBe(before);
    } finally {
      vi.useRealTimers();
    }
  });

  it('keeps a connection a running command uses when another comes with another URL', async () => {
    const before = replies.length;
    const firstHeld: (() => void)[] = [];
    held = firstHeld;
    const first = serve(['images', '-q']);
    await until(() => replies.length > before);
    held = undefined;
    const other = nats.url.replace('127.0.0.1', 'localhost');
    expect((await serve(['images', '-q'], env({ BERTH_NATS_URL: other }))).at(-1)).toEqual({
      type: 'exit',
      code: 0,
    });
    // The first command's connection is still open: its answer reaches it.
    for (const answer of firstHeld) answer();
    expect((await first).at(-1)).toEqual({ type: 'exit', code: 0 });
  });

  it('refuses what the client must run itself', async () => {
    const refused = async (argv: string[], e?: Record<string, string>) => {
      const lines = await serve(argv, e);
      expect(lines, argv.join(' ')).toHaveLength(1);
      expect(lines[0]?.type, argv.join(' ')).toBe('refused');
    };
    await refused(['rm', '-f', 'x']);
    await refused(['images', '--bogus']);
    // A terminal or stdin only the client's own run can give the container.
    await refused(['run', '-it', 'busybox', 'sh']);
    await refused(['run', '-i', 'busybox', 'sh']);
    await refused(['run', '--tty', 'busybox', 'sh']);
    await refused(['--trace', 'ps']);
    await refused(['ps'], env({ BERTH_TRACE: '1' }));
    // Another installation's client (its socket is elsewhere) or a config that does not load.
    await refused(['ps'], env({ BERTH_RUN_ROOT: join(dir, 'other') }));
    await refused(['ps'], env({ BERTH_CONFIG: join(dir, 'missing.json') }));
    // Files of a TLS or creds login are the client's to read, and its extra CAs are its own.
    await refused(['images'], env({ BERTH_NATS_CREDS: join(dir, 'x.creds') }));
    await refused(['images'], env({ BERTH_EXTRA_CA_CERTS: join(dir, 'ca.pem') }));
    await refused(['images'], env({ NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') }));
    // A config it could read once only, or relative to the client's directory.
    const fifo = join(dir, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    await refused(['images'], env({ BERTH_CONFIG: fifo }));
    await refused(['images'], env({ BERTH_CONFIG: 'config.json' }));
    // Files run would read that are the supervisor's own (its stdin, fds, /proc) or block.
    await refused(['run', '--env-file', '/dev/stdin', 'busybox', 'true']);
    await refused(['run', '--env-file', '/proc/self/environ', 'busybox', 'true']);
    await refused(['run', '--env-file', 'config.fifo', 'busybox', 'true']);
    await refused(['run', '--security-opt', 'seccomp=/dev/fd/0', 'busybox', 'true']);
  });
});
