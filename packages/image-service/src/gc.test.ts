import { Code } from '@berth/api';
import { keys, tryLock } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lease } from './content/lease.js';
import { hostPlatform } from './images/platform.js';
import { type FixtureImage, fileTar, makeImage, makeLayer, sha, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { serveTaskStandIn, standInContainer } from './testing/task-stand-in.js';

const arch = hostPlatform().architecture;
let env: ImageEnv;
let a: FixtureImage;
let b: FixtureImage;
const hex = (d: string) => d.slice(7);

beforeAll(async () => {
  env = await startImageEnv();
  const shared = makeLayer(fileTar('shared', 'shared layer'), 'gzip');
  a = makeImage([shared, makeLayer(fileTar('a', 'only a'), 'gzip')], { arch });
  b = makeImage([shared, makeLayer(fileTar('b', 'only b'), 'zstd')], { arch });
  await uploadImage(env.registry.url, 'gc/a', 'v1', a);
  await uploadImage(env.registry.url, 'gc/b', 'v1', b);
});
afterAll(() => env?.stop());

describe('rmi and gc', () => {
  it('removes only blobs nothing references, across names and namespaces', async () => {
    const svc = env.service();
    const ra = `${env.registry.host}/gc/a:v1`;
    const rb = `${env.registry.host}/gc/b:v1`;
    await svc.pull({ ref: ra, unpack: false }, 'default');
    await svc.pull({ ref: rb, unpack: false }, 'default');
    await svc.tag('default', { source: ra, target: 'mine/a:copy' });
    await svc.pull({ ref: rb, unpack: false }, 'other-ns');

    await svc.remove('default', { name: ra });
    // a is still named mine/a:copy: nothing of it may go.
    for (const d of a.blobs.keys()) expect(await env.blobFiles()).toContain(hex(d));

    const r = await svc.remove('default', { name: 'mine/a:copy' });
    expect(r.removed).toEqual(['docker.io/mine/a:copy']);
    expect(r.gc?.snapshots).toMatch(/^skipped: UNAVAILABLE/);
    const files = await env.blobFiles();
    expect(files).not.toContain(hex(a.desc.digest));
    expect(files).not.toContain(hex(a.layers[1]?.desc.digest ?? ''));
    expect(files).toContain(hex(a.layers[0]?.desc.digest ?? ''));
    expect(await env.redis.exists(keys.content(env.node, a.desc.digest))).toBe(0);

    await svc.remove('default', { name: rb });
    expect(await env.blobFiles()).toContain(hex(b.desc.digest));
    await svc.remove('other-ns', { name: rb });
    expect(await env.blobFiles()).toEqual([]);
    await expect(svc.get('default', rb)).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it('refuses to remove an image a container uses unless forced', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/gc/a:v1`;
    const id = (n: string) => n.padEnd(64, '0');
    const rec0 = await svc.pull({ ref, unpack: false }, 'ctr');
    // The task-service knows the containers; the stand-in answers for it over NATS.
    const c1 = standInContainer({
      id: id('c1'),
      namespace: 'ctr',
      node: env.node,
      image: { name: ref, digest: `sha256:${'9'.repeat(64)}` },
    });
    env.tasks.containers = [c1];
    const e = await rejection(svc.remove('ctr', { name: ref }));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toContain('c1');
    expect(e.message).toContain(ref);
    // Matched by digest here.
    const rec = await svc.get('ctr', ref);
    expect(rec.target.digest).toBe(rec0.image.target.digest);
    const c2 = standInContainer({
      id: id('c2'),
      namespace: 'ctr',
      node: env.node,
      image: { name: 'other-name', digest: rec.target.digest },
    });
    env.tasks.containers = [c2];
    expect((await rejection(svc.remove('ctr', { name: ref }))).message).toContain('c2');
    // A container of another node does not pin this node's image.
    env.tasks.containers = [{ ...c2, node: 'elsewhere', image: { name: ref, digest: rec.target.digest } }];
    await svc.tag('ctr', { source: ref, target: 'keep/me:1' });
    expect((await svc.remove('ctr', { name: 'keep/me:1' })).removed).toEqual(['docker.io/keep/me:1']);
    env.tasks.containers = [c1];
    const r = await svc.remove('ctr', { name: ref, force: true });
    expect(r.removed).toEqual([ref]);
    expect(await env.blobFiles()).not.toContain(hex(a.desc.digest));
    env.tasks.containers = [];
  });

  it('refuses a plain rmi when the task-service cannot say whether a container uses the image', async () => {
    const ref = `${env.registry.host}/gc/a:v1`;
    // Nothing answers list-containers: the real no-responders path of the client.
    await env.tasks.stop();
    const unreachable = env.service();
    await unreachable.pull({ ref, unpack: false }, 'no-tasks');
    const e = await rejection(unreachable.remove('no-tasks', { name: ref }));
    expect(e.code).toBe(Code.UNAVAILABLE);
    expect(e.message).toContain(`cannot check whether a container uses image "${ref}"`);
    expect(e.message).toContain('task-service is unavailable');
    expect(e.message).toContain('-f');
    expect((await unreachable.get('no-tasks', ref)).name).toBe(ref);
    expect((await unreachable.remove('no-tasks', { name: ref, force: true })).removed).toEqual([ref]);
    env.tasks = await serveTaskStandIn(env.nc, env.node);
  });

  it('removes by id every name of the image only with -f, and one name without', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/gc/b:v1`;
    const rec = (await svc.pull({ ref, unpack: false }, 'ids')).image;
    await svc.tag('ids', { source: ref, target: 'ids/b:alias' });
    const id = rec.configDigest.slice(7, 19);
    const e = await rejection(svc.remove('ids', { name: id }));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toContain(`image "${id}" is referenced by 2 names`);
    expect(e.message).toContain('docker.io/ids/b:alias');
    expect(e.message).toContain(ref);
    expect((await svc.list('ids')).items.map((r) => r.name)).toHaveLength(2);
    const forced = await svc.remove('ids', { name: id, force: true });
    expect(forced.removed.sort()).toEqual(['docker.io/ids/b:alias', ref].sort());
    expect((await svc.list('ids')).items).toEqual([]);
    // One name left: the id removes it without -f.
    await svc.pull({ ref, unpack: false }, 'ids');
    expect((await svc.remove('ids', { name: id })).removed).toEqual([ref]);
  });

  it('never removes a blob that a lease protects or whose lock is held', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/gc/b:v1`;
    await svc.pull({ ref, unpack: false }, 'lease');
    await svc.images.delete('lease', ref);
    const lease = await Lease.create(env.redis, env.node, 60_000);
    await lease.add(b.desc.digest, ...b.blobs.keys());
    const lock = await tryLock(env.redis, keys.blobLock(env.node, sha(b.config)), 60_000);
    try {
      expect((await svc.gc('lease')).removedBlobs).toBe(0);
      await lease.release();
      const r = await svc.gc('lease');
      // All but the locked config went.
      expect(r.removedBlobs).toBe(b.blobs.size);
      expect(await env.blobFiles()).toEqual([hex(sha(b.config))]);
    } finally {
      await lock?.release();
    }
    expect((await svc.gc('lease')).removedBlobs).toBe(1);
    expect(await env.blobFiles()).toEqual([]);
  });

  it('holds a gcLater collection back until removals go quiet: a pull right after finds the blobs', async () => {
    const ref = `${env.registry.host}/gc/b:v1`;
    let snapshotGcs = 0;
    const svc = env.service({
      settings: { gcDelayMs: 1_500 },
      ports: {
        snapshotGc: async () => {
          snapshotGcs++;
        },
      },
    });
    const first = await svc.pull({ ref, unpack: false }, 'quiet');
    expect(first.fetchedBytes).toBeGreaterThan(0);
    await svc.remove('quiet', { name: ref, gcLater: true });
    // The removal's pull again (critest's image loop, a kubelet re-pulling): nothing to fetch.
    const again = await svc.pull({ ref, unpack: false }, 'quiet');
    expect(again.fetchedBytes).toBe(0);
    await svc.remove('quiet', { name: ref, gcLater: true });
    for (const d of b.blobs.keys()) expect(await env.blobFiles()).toContain(hex(d));
    // Both removals fold into one collection once quiet; then the blobs and the note are gone.
    await svc.gcLater.idle('quiet');
    expect(snapshotGcs).toBe(1);
    for (const d of b.blobs.keys()) expect(await env.blobFiles()).not.toContain(hex(d));
    expect(await env.redis.hget(keys.gcPending(env.node), 'quiet')).toBeNull();
  });

  it('collects after the reply with gcLater, keeping a note in Redis until a collection of it finishes', async () => {
    const ref = `${env.registry.host}/gc/a:v1`;
    const pending = () => env.redis.hget(keys.gcPending(env.node), 'later');
    // The snapshot-service is down (the harness's ports): the content goes, the note stays.
    const down = env.service();
    await down.pull({ ref, unpack: false }, 'later');
    const r = await down.remove('later', { name: ref, gcLater: true });
    expect(r).toEqual({ removed: [ref] });
    expect(await pending()).not.toBeNull();
    await down.gcLater.idle('later');
    expect(await env.blobFiles()).toEqual([]);
    expect(await pending()).not.toBeNull();
    // A service started later (the one that crashed never finished) runs it, and the note goes.
    let snapshotGcs = 0;
    const up = env.service({
      ports: {
        snapshotGc: async () => {
          snapshotGcs++;
        },
      },
    });
    await up.gcLater.resume();
    await up.gcLater.idle('later');
    expect(snapshotGcs).toBe(1);
    expect(await pending()).toBeNull();
    // Nothing noted: nothing to run.
    await up.gcLater.resume();
    await up.gcLater.idle('later');
    expect(snapshotGcs).toBe(1);
  });
});
