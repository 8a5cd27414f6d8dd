// The image-service as a real process on a real nats-server: progress events, SIGKILL mid-pull,
// and two replicas sharing one content store.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Code, ImageApi, type PullProgress } from '@berth/api';
import { call, type EventEnvelope, subscribeEvents } from '@berth/kit';
import { startNats, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import { type FixtureImage, fileTar, makeImage, makeLayer, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { type ServiceProcess, startImageService } from './testing/process.js';
import { type RegistryProxy, startProxy } from './testing/proxy.js';
import { serveTaskStandIn, type TaskStandIn } from './testing/task-stand-in.js';

const arch = hostPlatform().architecture;
let env: ImageEnv;
let nats: TestServer;
let nc: NatsConnection;
let proxy: RegistryProxy;
/** The replicas' task-service (rmi's in-use check), on this file's NATS. */
let tasks: TaskStandIn;
let img: FixtureImage;
let img2: FixtureImage;
let hold:
  | { until: Promise<void>; release: () => void; partialSent: Promise<void>; sent: () => void }
  | undefined;
const procs: ServiceProcess[] = [];

function gate() {
  let release!: () => void;
  let sent!: () => void;
  const until = new Promise<void>((r) => {
    release = r;
  });
  const partialSent = new Promise<void>((r) => {
    sent = r;
  });
  return { until, release, partialSent, sent };
}

async function replica(settings: Record<string, unknown> = {}) {
  const p = await startImageService({
    nc,
    natsUrl: nats.url,
    redisUrl: env.redisServer.url,
    node: env.node,
    stateRoot: env.stateRoot,
    configDir: env.stateRoot,
    settings: { blobLockTtlMs: 3000, ...settings },
  });
  procs.push(p);
  return p;
}

beforeAll(async () => {
  [env, nats] = await Promise.all([startImageEnv(), startNats({ jetstream: false })]);
  nc = await connect({ servers: nats.url });
  tasks = await serveTaskStandIn(nc, env.node);
  img = makeImage(
    [1, 2, 3]
      .map((i) => makeLayer(Buffer.alloc(1024 * 1024, i), 'none'))
      .concat(makeLayer(fileTar('x', 'y'), 'gzip')),
    { arch },
  );
  await uploadImage(env.registry.url, 'svc/img', 'v1', img);
  img2 = makeImage(
    [4, 5, 6, 7].map((i) => makeLayer(Buffer.alloc(1024 * 1024, i), 'none')),
    { arch },
  );
  await uploadImage(env.registry.url, 'svc/img2', 'v1', img2);
  const slow = img.layers[0]?.desc.digest as string;
  proxy = await startProxy({
    upstream: env.registry.url,
    intercept: async (req, res, path) => {
      const h = hold;
      if (!h || req.method !== 'GET' || !path.endsWith(`/blobs/${slow}`) || req.headers.range) return false;
      const body = img.layers[0]?.blob as Buffer;
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 300_000), () => h.sent());
      await h.until;
      res.destroy();
      return true;
    },
  });
});
afterAll(async () => {
  for (const p of procs) await p.kill('SIGKILL').catch(() => undefined);
  hold?.release();
  await proxy?.stop();
  await tasks?.stop();
  await nc?.close();
  await Promise.all([env?.stop(), nats?.stop()]);
});

const pull = (ref: string, extra: Record<string, unknown> = {}, ns = 'default') =>
  call(nc, ImageApi, 'pull', { ref, ...extra }, { node: env.node, namespace: ns, timeoutMs: 60_000 });

describe('image-service over NATS', () => {
  it('streams per-layer progress events and answers with the record; unpack UNAVAILABLE is reported', async () => {
    const svc = await replica();
    const info = await call(
      nc,
      ImageApi,
      'info',
      {},
      {
        node: env.node,
        timeoutMs: 5000,
      },
    );
    expect(info.checks.content).toBe('ok');
    expect(info.healthy).toBe(true);
    const events: PullProgress[] = [];
    const sub = subscribeEvents(nc, 'images.pull.progress.p1', (e: EventEnvelope) =>
      events.push(e.event as PullProgress),
    );
    await nc.flush();
    const r = await pull(`${env.registry.host}/svc/img:v1`, { pullId: 'p1' });
    sub.unsubscribe();
    expect(r.unpack).toBe('failed');
    expect(r.unpackError).toContain('UNAVAILABLE');
    expect(r.image.chainId).toBeUndefined();
    const last = events.at(-1);
    expect(last?.phase).toBe('done');
    expect(last?.digest).toBe(img.desc.digest);
    expect(last?.blobs.map((b) => b.digest).sort()).toEqual(img.layers.map((l) => l.desc.digest).sort());
    expect(last?.blobs.every((b) => b.status === 'done' && b.offset === b.size)).toBe(true);
    expect(events.some((e) => e.phase === 'unpacking')).toBe(true);
    const e = await rejection(pull('Bad//ref'));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    const nf = await rejection(pull(`${env.registry.host}/svc/none:v1`));
    expect(nf.code).toBe(Code.NOT_FOUND);
    expect(nf.message).toContain(`${env.registry.host}/svc/none:v1`);
    await call(
      nc,
      ImageApi,
      'remove',
      { name: `${env.registry.host}/svc/img:v1` },
      { node: env.node, timeoutMs: 30_000 },
    );
    expect(await env.blobFiles()).toEqual([]);
    await svc.kill();
  });

  it('leaves no committed partial blob when SIGKILLed mid-pull, and the next pull succeeds', async () => {
    const svc = await replica();
    hold = gate();
    const ref = `${proxy.host}/svc/img:v1`;
    // Its reply never comes (the replica dies); the request is left to time out on its own.
    void pull(ref, { unpack: false }).catch(() => undefined);
    await hold.partialSent;
    const ingestDir = join(env.ingestDir, (img.layers[0]?.desc.digest ?? '').slice(7));
    // The holder's own file, data-<fence>: wait until the service really wrote part of the blob.
    const written = async () => {
      for (const name of await readdir(ingestDir).catch(() => [] as string[])) {
        if (/^data-\d+$/.test(name))
          return (await stat(join(ingestDir, name)).catch(() => undefined))?.size ?? 0;
      }
      return 0;
    };
    for (let i = 0; i < 400 && (await written()) === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(await written(), 'the replica wrote part of the blob before being killed').toBeGreaterThan(0);
    await svc.kill('SIGKILL');
    hold.release();
    hold = undefined;
    expect(await env.blobFiles()).not.toContain((img.layers[0]?.desc.digest ?? '').slice(7));

    await replica();
    const r = await pull(ref, { unpack: false });
    expect(r.image.manifest.digest).toBe(img.desc.digest);
    // The partial ingest was resumed with a Range request, not downloaded again from zero.
    expect(r.fetchedBytes).toBeLessThan(img.layers.reduce((s, l) => s + l.blob.length, 0));
    const left = (await env.ingestEntries()).filter((e) => !e.startsWith('tmp-'));
    expect(
      left,
      `ingest left behind; layers ${img.layers.map((l) => l.desc.digest.slice(7, 19)).join(',')}; replica log:\n${procs.at(-1)?.output().slice(-4000)}`,
    ).toEqual([]);
  });

  it('two replicas pulling the same image at once fetch each blob once', async () => {
    for (const p of procs) await p.kill();
    const [a, b] = [await replica(), await replica()];
    const counter = await startProxy({ upstream: env.registry.url });
    try {
      const ref = `${counter.host}/svc/img2:v1`;
      const replies = await Promise.all(
        ['n1', 'n2', 'n3', 'n4'].map((ns) => pull(ref, { unpack: false }, ns)),
      );
      expect(new Set(replies.map((r) => r.image.target.digest)).size).toBe(1);
      for (const l of img2.layers) expect(counter.count('GET', `/blobs/${l.desc.digest}`)).toBe(1);
      expect(replies.reduce((s, r) => s + r.fetchedBytes, 0)).toBe(
        img2.layers.reduce((s, l) => s + l.blob.length, 0),
      );
    } finally {
      await counter.stop();
      await a.kill();
      await b.kill();
    }
  });
});
