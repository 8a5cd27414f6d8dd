import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ImageApi, subjectOf } from '@berth/api';
import { startNats, type TestServer } from '@berth/testing';
import { connect, JSONCodec, type Msg, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandServer, SERVED_COMMANDS, type ServedLine } from './served.js';

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

/** Every line the server sends for one request. */
async function serve(argv: string[], e: Record<string, string> = env()): Promise<ServedLine[]> {
  const lines: ServedLine[] = [];
  await server.serve({ argv, env: e }, (l) => lines.push(l));
  return lines;
}

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
  it('runs a listing with the launcher environment and sends its output and exit code', async () => {
    const lines = await serve(['images']);
    expect(lines[0]).toEqual({ type: 'accepted' });
    expect(lines.at(-1)).toEqual({ type: 'exit', code: 0 });
    const out = lines.flatMap((l) => (l.type === 'out' ? [l.data] : [])).join('');
    expect(out).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\n/);
    expect(out).toMatch(/busybox\s+1\s+cccccccccccc\s/);
    expect(lines.some((l) => l.type === 'err')).toBe(false);
  });

  it('answers one command after another over one NATS connection, refusing one that comes meanwhile', async () => {
    const before = replies.length;
    held = [];
    const first = serve(['images']);
    await until(() => replies.length > before);
    // A second launcher is not kept waiting behind the first: it runs its command itself.
    expect(await serve(['images', '-q'])).toEqual([{ type: 'refused', reason: 'busy' }]);
    for (const answer of held) answer();
    held = undefined;
    expect((await first).at(-1)).toEqual({ type: 'exit', code: 0 });
    for (const argv of [['images', '-q'], ['images']])
      expect((await serve(argv)).at(-1)).toEqual({ type: 'exit', code: 0 });
    const seen = replies.slice(before);
    expect(seen).toHaveLength(3);
    // nats.js answers every request of a connection on one inbox subscription (`<inbox>.<n>`).
    const inboxes = new Set(seen.map((r) => r.slice(0, r.lastIndexOf('.'))));
    expect(inboxes.size).toBe(1);
  });

  it('sends a long output in lines of at most 64 K characters, whole characters each', async () => {
    listing = Array.from({ length: 1500 }, (_, i) => ({
      ...IMAGE,
      name: `docker.io/library/b\u00fcsybox-${i}:1`,
    }));
    try {
      const lines = await serve(['images']);
      expect(lines.at(-1)).toEqual({ type: 'exit', code: 0 });
      const outs = lines.flatMap((l) => (l.type === 'out' ? [l.data] : []));
      expect(outs.length).toBeGreaterThan(1);
      for (const d of outs) expect(d.length).toBeLessThanOrEqual(64 * 1024);
      const text = outs.join('');
      expect(text.split('\n')).toHaveLength(1502);
      expect(text).toContain('b\u00fcsybox-1499');
    } finally {
      listing = [IMAGE];
    }
  });

  it('sends a failure as the CLI prints it, with its exit code', async () => {
    const lines = await serve(['images', '--bogus']);
    expect(lines).toEqual([
      { type: 'accepted' },
      { type: 'err', data: expect.stringMatching(/^berth: berth images: Unknown option '--bogus'/) },
      { type: 'exit', code: 2 },
    ]);
    const down = await serve(['images'], env({ BERTH_NATS_URL: 'nats://127.0.0.1:9' }));
    expect(down.at(-1)).toEqual({ type: 'exit', code: 1 });
    expect(down.find((l) => l.type === 'err')).toMatchObject({
      data: expect.stringContaining('cannot reach NATS at nats://127.0.0.1:9'),
    });
  });

  it('refuses what the launcher must run itself', async () => {
    const refused = async (argv: string[], e?: Record<string, string>) => {
      const lines = await serve(argv, e);
      expect(lines, argv.join(' ')).toHaveLength(1);
      expect(lines[0]?.type, argv.join(' ')).toBe('refused');
    };
    await refused(['rm', '-f', 'x']);
    await refused(['run', 'busybox', 'true']);
    await refused(['--trace', 'ps']);
    await refused(['ps'], env({ BERTH_TRACE: '1' }));
    // Another installation's launcher (its socket is elsewhere) or a config that does not load.
    await refused(['ps'], env({ BERTH_RUN_ROOT: join(dir, 'other') }));
    await refused(['ps'], env({ BERTH_CONFIG: join(dir, 'missing.json') }));
    // Files of a TLS or creds login are the launcher's to read, and its extra CAs are its own.
    await refused(['images'], env({ BERTH_NATS_CREDS: join(dir, 'x.creds') }));
    await refused(['images'], env({ BERTH_EXTRA_CA_CERTS: join(dir, 'ca.pem') }));
    await refused(['images'], env({ NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') }));
    // A config it could read once only, or relative to the launcher's directory.
    const fifo = join(dir, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    await refused(['images'], env({ BERTH_CONFIG: fifo }));
    await refused(['images'], env({ BERTH_CONFIG: 'config.json' }));
  });

  it('serves the words the launcher sends it (bin/berth.js SERVED)', () => {
    const launcher = readFileSync(
      join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'berth.js'),
      'utf8',
    );
    const words = /const SERVED = (\[[^\]]*\]);/.exec(launcher)?.[1];
    expect(JSON.parse(String(words).replaceAll("'", '"'))).toEqual(SERVED_COMMANDS);
  });
});
