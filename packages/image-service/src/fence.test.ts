import { readdir, readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Code, type Descriptor, MediaType, type PullProgress } from '@berth/api';
import { type Fence, keys, type Lock, tryLock } from '@berth/kit';
import { startTcpRelay, type TcpRelay } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import { type FixtureImage, makeImage, makeLayer, sha, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { type RegistryProxy, startProxy } from './testing/proxy.js';

// A writer whose blob lock expires mid-write must stop and commit nothing, and the next holder's
// result must stand. Real Redis, registry and files; the lock expires in Redis on its own because
// the writer is cut off from Redis by a frozen relay (a partition), not because a test deletes it.

let env: ImageEnv;
let proxy: RegistryProxy;
let relay: TcpRelay;
let img: FixtureImage;
let layer: Descriptor;
/** The first GET of the layer is answered with 100 000 bytes and then held open. */
let hold = false;
let held: { res: ServerResponse; closed: Promise<void> } | undefined;
let onHeld: () => void = () => undefined;

beforeAll(async () => {
  env = await startImageEnv();
  img = makeImage([makeLayer(Buffer.alloc(256 * 1024, 3), 'none')], { arch: hostPlatform().architecture });
  layer = img.layers[0]?.desc as Descriptor;
  await uploadImage(env.registry.url, 'fence/img', 'v1', img);
  relay = await startTcpRelay(env.redisServer.url);
  proxy = await startProxy({
    upstream: env.registry.url,
    intercept: (req, res, path) => {
      if (!hold || req.method !== 'GET' || !path.endsWith(`/blobs/${layer.digest}`)) return false;
      hold = false;
      const body = img.layers[0]?.blob as Buffer;
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 100_000));
      held = { res, closed: new Promise((r) => res.on('close', () => r())) };
      onHeld();
      return true;
    },
  });
});
afterAll(async () => {
  held?.res.destroy();
  relay?.thaw();
  await proxy?.stop();
  // The service connections first, so none of them reconnects to a relay that is gone.
  await env?.stop();
  await relay?.stop();
});

/** Waits for a condition of the file system to hold (checked every 20 ms, failing after 10 s). */
async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ingestFiles = () => readdir(join(env.ingestDir, layer.digest.slice(7))).catch(() => [] as string[]);

describe('a blob download whose lock expires', () => {
  it('stops (fetch aborted, its partial data removed), commits nothing, and the next holder commits', async () => {
    const ref = `${proxy.host}/fence/img:v1`;
    hold = true;
    const isHeld = new Promise<void>((r) => {
      onHeld = r;
    });
    // Writer A reaches Redis only through the relay; its lock lives 1.5 s unless renewed.
    let received: () => void = () => undefined;
    const hasReceived = new Promise<void>((r) => {
      received = r;
    });
    const a = env.service({
      redisUrl: relay.url,
      // The stall timeout is far away: only the lost lock can stop this download.
      settings: { blobLockTtlMs: 1500, progressTimeoutMs: 600_000 },
      ports: {
        publish: (_topic, _ns, event) => {
          const p = event as PullProgress;
          if (p.blobs.some((b) => b.digest === layer.digest && b.offset === 100_000)) received();
        },
      },
    });
    const pullA = a.pull({ ref, unpack: false, pullId: 'writer-a' }, 'writer-a').catch((e: unknown) => e);
    await isHeld;
    await hasReceived;
    const mine = (await ingestFiles()).find((f) => f.startsWith('data-'));
    expect(mine).toMatch(/^data-\d+$/);

    relay.freeze();
    // Cut off, A cannot renew: it gives the lock up by itself before the key can expire in Redis,
    // aborting its fetch (the registry sees the connection go) and removing its partial file.
    await held?.closed;
    // Removed, not kept as a prefix to resume from: bytes written without the lock are not trusted.
    await until('A removed its partial data', async () => {
      const files = await ingestFiles();
      return !files.includes(mine as string) && !files.includes('data');
    });

    // B waits for the key to expire in Redis, takes the lock and downloads the blob itself.
    const b = env.service({ ownRedis: true, settings: { blobLockTtlMs: 1500 } });
    const rb = await b.pull({ ref, unpack: false }, 'writer-b');
    expect(rb.fetchedBytes).toBe(layer.size);

    relay.thaw();
    const e = (await pullA) as Error & { code: string };
    expect(e.code).toBe(Code.ABORTED);
    expect(e.message).toContain(`lost the lock on blob ${layer.digest} of "${ref}"`);
    expect(e.message).toContain('no renewal reached Redis within its ttl of 1500 ms');
    expect(e.message).toContain('stopped at byte 100000 of 262144 and its partial data was removed');

    // B's result stands: the verified blob, its record, B's image; nothing of A's.
    const onDisk = await readFile(join(env.blobsDir, layer.digest.slice(7)));
    expect(sha(onDisk)).toBe(layer.digest);
    expect(await env.redis.hget(keys.content(env.node, layer.digest), 'size')).toBe(String(layer.size));
    expect(await env.redis.sismember(keys.contents(env.node), layer.digest)).toBe(1);
    expect((await b.get('writer-b', ref)).target.digest).toBe(img.desc.digest);
    expect((await rejection(a.get('writer-a', ref))).code).toBe(Code.NOT_FOUND);
    expect(await ingestFiles()).toEqual([]);
    expect(proxy.count('GET', `/blobs/${layer.digest}`)).toBe(2);
  });
});

describe('the commit of a blob record', () => {
  /**
   * A writer takes the blob lock (tryLock: never renewed, as if its process stalled), the lock
   * expires and B takes it and commits the record; then A, unaware, commits with `fence(stale)`.
   * Returns A's outcome and the record as it ends up.
   */
  async function staleCommit(fence: (stale: Lock) => Promise<Fence>) {
    const data = Buffer.from(`blob ${Math.random()}`);
    const desc = (mediaType: string): Descriptor => ({ mediaType, digest: sha(data), size: data.length });
    const store = env.service({ ownRedis: true, settings: { blobLockTtlMs: 300 } }).content;
    const stale = (await tryLock(env.redis, keys.blobLock(env.node, sha(data)), 300)) as Lock;
    expect(stale).toBeDefined();
    await store.writeBuffer(desc(MediaType.ociConfig), data, { 'gc.ref.content.l.0': 'sha256:b' });
    const outcome = await store
      .record(desc(MediaType.ociLayer), await fence(stale), `blob ${sha(data)}`, {
        'gc.ref.content.l.0': 'a',
      })
      .then(
        () => 'committed',
        (e: { code: string; message: string }) => `${e.code}: ${e.message}`,
      );
    const rec = await env.redis.hgetall(keys.content(env.node, sha(data)));
    return { outcome, mediaType: rec.mediaType, labels: JSON.parse(rec.labels ?? '{}') };
  }

  it('refuses a holder whose lock expired and was taken, so the next holder record stands', async () => {
    const r = await staleCommit(async (stale) => stale);
    expect(r.outcome).toMatch(/^ABORTED: lost the lock on blob sha256:\w+ before the commit/);
    expect(r).toMatchObject({
      mediaType: MediaType.ociConfig,
      labels: { 'gc.ref.content.l.0': 'sha256:b' },
    });
  });

  it('(control) a commit checking another lock than the blob lock lands over the next holder', async () => {
    // The same scenario with the fence check made meaningless (it checks a lock A does hold):
    // A's stale write lands, so the assertion above would catch a commit that ignored the fence.
    const r = await staleCommit(
      async () =>
        (await tryLock(env.redis, keys.blobLock(env.node, `sha256:control${Math.random()}`), 60_000)) as Lock,
    );
    expect(r.outcome).toBe('committed');
    expect(r.mediaType).toBe(MediaType.ociLayer);
    expect(r.labels).toEqual({ 'gc.ref.content.l.0': 'a' });
  });
});
