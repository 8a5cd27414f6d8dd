import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, chainIds, type Mount } from '@berth/api';
import { keys, subscribeEvents } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Snapshotter } from './snapshots/snapshotter.js';
import { type SnapshotEnv, startSnapshotEnv } from './testing/env.js';
import { putLayer } from './testing/oci.js';

let env: SnapshotEnv;
beforeAll(async () => {
  env = await startSnapshotEnv();
});
afterAll(async () => {
  await env?.stop();
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    throw err;
  }
  return 'OK';
}

/** Mounts `mounts` on a fresh directory, runs fn, unmounts. */
async function withMounted<T>(mounts: Mount[], fn: (dir: string) => T): Promise<T> {
  const target = mkdtempSync(join(tmpdir(), 'berth-mnt-'));
  const m = mounts[0] as Mount;
  const args =
    m.type === 'bind'
      ? ['--bind', '-o', m.options.join(','), m.source, target]
      : ['-t', m.type, '-o', m.options.join(','), m.source, target];
  const r = spawnSync('mount', args, { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  try {
    return fn(target);
  } finally {
    spawnSync('umount', [target]);
    rmSync(target, { recursive: true, force: true });
  }
}

describe('snapshotter over NATS', () => {
  it('prepares, commits, stacks and removes snapshots with containerd mount rules', async () => {
    const c = env.client;
    const events: string[] = [];
    const sub = subscribeEvents(env.nc, 'snapshots.*', (e) =>
      events.push(`${e.topic} ${JSON.stringify(e.event)}`),
    );
    await env.nc.flush();
    const base = await c.prepare({ key: 'base-active', labels: { a: '1' } });
    expect(base.mounts).toHaveLength(1);
    expect(base.mounts[0]?.type).toBe('bind');
    expect(base.mounts[0]?.options).toEqual(['rw', 'rbind']);
    writeFileSync(join(base.mounts[0]?.source as string, 'hello'), 'world');
    const info = await c.commit({ name: 'base', key: 'base-active' });
    expect(info).toMatchObject({ name: 'base', kind: 'committed', labels: { a: '1' } });
    expect(await code(c.stat({ key: 'base-active' }))).toBe('NOT_FOUND');
    expect((await c.usage({ key: 'base' })).inodes).toBe(2);

    // A view of one parent is a ro bind of the parent.
    const v1 = await c.view({ key: 'v1', parent: 'base' });
    expect(v1.mounts[0]).toMatchObject({ type: 'bind', options: ['ro', 'rbind'] });
    expect(v1.mounts[0]?.source).toBe(base.mounts[0]?.source);

    // Active on one parent: overlay with upper/work.
    const a = await c.prepare({ key: 'ctr', parent: 'base' });
    const opts = a.mounts[0]?.options ?? [];
    expect(a.mounts[0]?.type).toBe('overlay');
    expect(opts.some((o) => o.startsWith('upperdir='))).toBe(true);
    expect(opts.some((o) => o.startsWith('workdir='))).toBe(true);
    expect(opts.find((o) => o.startsWith('lowerdir='))).toBe(`lowerdir=${base.mounts[0]?.source}`);
    expect((await c.mounts({ key: 'ctr' })).mounts).toEqual(a.mounts);
    await withMounted(a.mounts, (dir) => {
      expect(readFileSync(join(dir, 'hello'), 'utf8')).toBe('world');
      writeFileSync(join(dir, 'layer2'), 'two');
    });
    await c.commit({ name: 'second', key: 'ctr', labels: { tier: 'l2' } });
    // Usage excludes the parents: its own root and layer2, not base's hello.
    expect((await c.usage({ key: 'second' })).inodes).toBe(2);

    // A view of two parents: overlay, lowerdir nearest first, no upper.
    const v2 = await c.view({ key: 'v2', parent: 'second' });
    const lower = v2.mounts[0]?.options.find((o) => o.startsWith('lowerdir=')) ?? '';
    expect(lower.slice('lowerdir='.length).split(':')).toHaveLength(2);
    expect(v2.mounts[0]?.options.some((o) => o.startsWith('upperdir='))).toBe(false);
    await withMounted(v2.mounts, (dir) => {
      expect(readdirSync(dir).sort()).toEqual(['hello', 'layer2']);
    });

    expect(await code(c.remove({ key: 'base' }))).toBe('FAILED_PRECONDITION');
    expect(await code(c.commit({ name: 'x', key: 'v2' }))).toBe('FAILED_PRECONDITION');
    expect(await code(c.mounts({ key: 'second' }))).toBe('FAILED_PRECONDITION');
    expect(await code(c.prepare({ key: 'v2' }))).toBe('ALREADY_EXISTS');
    expect(await code(c.prepare({ key: 'y', parent: 'nope' }))).toBe('NOT_FOUND');
    expect(await code(c.prepare({ key: 'y', parent: 'v2' }))).toBe('FAILED_PRECONDITION');
    expect(await code(c.prepare({ key: '' } as never))).toBe('INVALID_ARGUMENT');
    // The id each refused prepare allocated beside its reads was given back: none is left pending.
    expect(await env.redis.zcard(keys.snapshotPending(env.node))).toBe(0);
    expect(readdirSync(env.layout.snapshots).filter((n) => n.startsWith('new-'))).toEqual([]);

    const all = await c.list({});
    expect(all.snapshots.map((s) => s.name)).toEqual(['base', 'second', 'v1', 'v2']);
    expect((await c.list({ filters: ['kind==committed'] })).snapshots.map((s) => s.name)).toEqual([
      'base',
      'second',
    ]);
    expect(
      (await c.list({ filters: ['parent==second', 'labels.tier==l2'] })).snapshots.map((s) => s.name),
    ).toEqual(['second', 'v2']);
    expect((await c.list({ filters: ['kind==view,parent==base'] })).snapshots.map((s) => s.name)).toEqual([
      'v1',
    ]);
    expect(await code(c.list({ filters: ['color==red'] }))).toBe('INVALID_ARGUMENT');

    const upd = await c.update({
      key: 'second',
      labels: { extra: 'x' },
      fieldpaths: ['labels.extra', 'labels.tier'],
    });
    expect(upd.labels).toEqual({ extra: 'x' });

    for (const k of ['v2', 'v1', 'second', 'base']) await c.remove({ key: k });
    expect((await c.list({})).snapshots).toEqual([]);
    await env.nc.flush();
    sub.unsubscribe();
    expect(events).toContain('snapshots.commit {"key":"base-active","name":"base"}');
    expect(events).toContain('snapshots.prepare {"key":"ctr","parent":"base"}');
    expect(events).toContain('snapshots.remove {"key":"base"}');
    expect(readdirSync(env.layout.snapshots)).toEqual([]);
  });

  it('cleanup removes directories that no snapshot references', async () => {
    const c = env.client;
    const m = await c.prepare({ key: 'orphan' });
    const id = String(m.mounts[0]?.source ?? '')
      .split('/')
      .at(-2) as string;
    // Simulate a crash after the metadata was forgotten but before the directory was deleted.
    await env.redis.del(keys.snapshot(env.node, 'orphan'));
    await env.redis.srem(keys.snapshots(env.node), 'orphan');
    mkdirSync(join(env.layout.snapshots, 'new-1-deadbeef', 'fs'), { recursive: true });
    mkdirSync(join(env.layout.snapshots, 'rm-2', 'fs'), { recursive: true });
    const keep = await c.prepare({ key: 'keep' });
    const res = await c.cleanup({});
    expect(res.removed.sort()).toEqual([id, 'new-1-deadbeef', 'rm-2'].sort());
    expect(existsSync(keep.mounts[0]?.source as string)).toBe(true);
    await c.remove({ key: 'keep' });
  });

  it('cleanup takes back a stale pending id that has no directory, and keeps a young one', async () => {
    const pending = keys.snapshotPending(env.node);
    // As a replica that died (or stopped holding a spare id) before making the directory leaves
    // it; ids no snapshot of this test uses.
    await env.redis.zadd(pending, Date.now() - 2 * 60 * 60 * 1000, '900001', Date.now(), '900002');
    expect((await env.client.cleanup({})).removed).toEqual([]);
    expect(await env.redis.zscore(pending, '900001')).toBeNull();
    expect(await env.redis.zscore(pending, '900002')).not.toBeNull();
    await env.redis.zrem(pending, '900002');
  });

  it('does not use a pending id cleanup took back: the create takes another', async () => {
    const c = env.client;
    const dirOf = (m: Mount[]) => String(m[0]?.source).split('/').at(-2) as string;
    await c.prepare({ key: 'taken-1' });
    // The id the first create allocated for the next one, taken back as cleanup does a stale one.
    const spare = await env.redis.zrange(keys.snapshotPending(env.node), 0, -1);
    expect(spare).toHaveLength(1);
    await env.redis.zrem(keys.snapshotPending(env.node), spare[0] as string);
    const two = await c.prepare({ key: 'taken-2' });
    expect(dirOf(two.mounts)).not.toBe(spare[0]);
    expect(existsSync(join(env.layout.snapshots, spare[0] as string))).toBe(false);
    expect((await c.stat({ key: 'taken-2' })).kind).toBe('active');
    for (const k of ['taken-1', 'taken-2']) await c.remove({ key: k });
  });

  it('prepares on the parent as it is now when another replica removed it and made it again', async () => {
    const c = env.client;
    // A second replica on the node: same Redis, same directories.
    const other = new Snapshotter(env.redis, env.node, env.layout.snapshots);
    const lowerOf = (m: Mount[]) => m[0]?.options.find((o) => o.startsWith('lowerdir=')) ?? '';
    const a = await c.prepare({ key: 'again-a' });
    writeFileSync(join(a.mounts[0]?.source as string, 'f'), 'x');
    await c.commit({ name: 'again', key: 'again-a' });
    const first = (await c.view({ key: 'again-v', parent: 'again' })).mounts[0]?.source as string;
    // The first prepare reads the parent; the second may use what it read.
    await c.prepare({ key: 'again-1', parent: 'again' });
    const two = await c.prepare({ key: 'again-2', parent: 'again' });
    expect(lowerOf(two.mounts)).toBe(`lowerdir=${first}`);
    for (const k of ['again-1', 'again-2', 'again-v', 'again']) await other.remove(k);
    const made = await other.prepare({ key: 'again-a' });
    await other.commit({ name: 'again', key: 'again-a' });
    const second = made[0]?.source as string;
    expect(second).not.toBe(first);
    const three = await c.prepare({ key: 'again-3', parent: 'again' });
    expect(lowerOf(three.mounts)).toBe(`lowerdir=${second}`);
    for (const k of ['again-3', 'again']) await c.remove({ key: k });
    expect(readdirSync(env.layout.snapshots).filter((n) => n.startsWith('new-'))).toEqual([]);
  });
});

describe('unpack over NATS', () => {
  const layers = () => {
    const blobs = env.layout.content.blobs;
    return [
      putLayer(
        blobs,
        [
          { name: 'bin/', type: 'dir', mode: 0o755 },
          { name: 'bin/sh', type: 'file', mode: 0o755, data: Buffer.from('sh') },
          { name: 'etc/', type: 'dir', mode: 0o755 },
          { name: 'etc/passwd', type: 'file', data: Buffer.from('root:x:0:0') },
          { name: 'var/', type: 'dir' },
          { name: 'var/old', type: 'file', data: Buffer.from('old') },
        ],
        'gzip',
      ),
      putLayer(
        blobs,
        [
          { name: 'etc/.wh.passwd', type: 'file' },
          { name: 'var/', type: 'dir' },
          { name: 'var/.wh..wh..opq', type: 'file' },
          { name: 'var/new', type: 'file', data: Buffer.from('new') },
        ],
        'zstd',
      ),
      putLayer(blobs, [{ name: 'bin/extra', type: 'file', data: Buffer.from('x') }], 'none'),
    ];
  };

  it('applies each layer once as a committed snapshot named by its chainID', async () => {
    const ls = layers();
    const req = { layers: ls.map((l) => l.descriptor), diffIds: ls.map((l) => l.diffId) };
    const chain = chainIds(req.diffIds);
    const r = await env.client.unpack(req);
    expect(r).toEqual({ chainId: chain[2], applied: 3, skipped: 0 });
    const top = await env.client.stat({ key: chain[2] as string });
    expect(top).toMatchObject({ kind: 'committed', parent: chain[1] });
    expect(top.labels['berth.io/diff-id']).toBe(req.diffIds[2]);
    expect(await env.client.unpack(req)).toEqual({ chainId: chain[2], applied: 0, skipped: 3 });

    const v = await env.client.view({ key: 'look', parent: chain[2] as string });
    await withMounted(v.mounts, (dir) => {
      expect(readdirSync(join(dir, 'bin')).sort()).toEqual(['extra', 'sh']);
      expect(existsSync(join(dir, 'etc/passwd'))).toBe(false);
      expect(readdirSync(join(dir, 'var'))).toEqual(['new']);
    });
    await env.client.remove({ key: 'look' });
    // A shared base is skipped when another image builds on it.
    const other = putLayer(env.layout.content.blobs, [{ name: 'other', type: 'file' }], 'gzip');
    const r2 = await env.client.unpack({
      layers: [ls[0]!.descriptor, other.descriptor],
      diffIds: [ls[0]!.diffId, other.diffId],
    });
    expect(r2).toMatchObject({ applied: 1, skipped: 1 });
  });

  it('discards a layer whose DiffID does not match the config', async () => {
    const ls = layers();
    const wrong = `sha256:${'0'.repeat(64)}`;
    const req = { layers: [ls[2]!.descriptor], diffIds: [wrong] };
    const err = await env.client.unpack(req).catch((e: BerthError) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('DATA_LOSS');
    expect((err as BerthError).message).toContain('wrong diff id');
    const left = (await env.client.list({})).snapshots.map((s) => s.name);
    expect(left.some((n) => n.startsWith('extract-') || n === wrong)).toBe(false);
    const missing = { mediaType: ls[0]!.descriptor.mediaType, digest: `sha256:${'1'.repeat(64)}`, size: 1 };
    expect(await code(env.client.unpack({ layers: [missing], diffIds: [wrong] }))).toBe('NOT_FOUND');
    expect(await code(env.client.unpack({ layers: [missing], diffIds: [wrong, wrong] }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('applies a chain once when two replicas unpack it at the same time', async () => {
    const second = await env.replica();
    const blobs = env.layout.content.blobs;
    const ls = [0, 1, 2].map((i) =>
      putLayer(
        blobs,
        [{ name: `f${i}`, type: 'file', data: Buffer.alloc(300_000 + i, i) }],
        i === 1 ? 'zstd' : 'gzip',
      ),
    );
    const req = { layers: ls.map((l) => l.descriptor), diffIds: ls.map((l) => l.diffId) };
    const results = await Promise.all([
      env.client.unpack(req),
      env.client.unpack(req),
      env.client.unpack(req),
    ]);
    expect(new Set(results.map((r) => r.chainId)).size).toBe(1);
    expect(results.reduce((n, r) => n + r.applied, 0)).toBe(3);
    const chain = chainIds(req.diffIds);
    const committed = (await env.client.list({ filters: ['kind==committed'] })).snapshots.map((s) => s.name);
    for (const c of chain) expect(committed.filter((n) => n === c)).toHaveLength(1);
    await second.stop(500);
  });

  it('gc keeps what images and containers reach and removes the rest', async () => {
    // Start from a node holding only what this case creates.
    await env.client.gc({ graceMs: 0 });
    expect((await env.client.list({})).snapshots).toEqual([]);
    const blobs = env.layout.content.blobs;
    const base = putLayer(blobs, [{ name: 'base', type: 'file', data: Buffer.from('b') }]);
    const a = putLayer(blobs, [{ name: 'a', type: 'file' }]);
    const b = putLayer(blobs, [{ name: 'b', type: 'file' }]);
    const c = putLayer(blobs, [{ name: 'c', type: 'file' }]);
    const unpack = (ls: (typeof base)[]) =>
      env.client.unpack({ layers: ls.map((l) => l.descriptor), diffIds: ls.map((l) => l.diffId) });
    const ra = await unpack([base, a]);
    const rb = await unpack([base, b]);
    const rc = await unpack([base, c]);
    // Image A is recorded by the image-service, which reports its top chainID as a GC root.
    env.images.roots = [ra.chainId];
    // A container runs on C.
    await env.client.prepare({ key: 'container-1', parent: rc.chainId });
    // An unpack that crashed left its extract snapshot behind, with no lock held.
    await env.client.prepare({
      key: `extract-dead ${b.diffId}`,
      parent: rb.chainId,
      labels: { 'berth.io/unpack': 'sha256:dead' },
    });

    const recent = await env.client.gc({ graceMs: 3_600_000 });
    expect(recent.removed).toEqual([]);
    const dry = await env.client.gc({ graceMs: 0, dryRun: true });
    expect(dry.removed.sort()).toEqual([`extract-dead ${b.diffId}`, rb.chainId].sort());
    const res = await env.client.gc({ graceMs: 0 });
    expect(res.removed).toEqual([`extract-dead ${b.diffId}`, rb.chainId]);
    const names = new Set((await env.client.list({})).snapshots.map((s) => s.name));
    expect(names.has(ra.chainId) && names.has(rc.chainId) && names.has(base.diffId)).toBe(true);
    expect(names.has(rb.chainId)).toBe(false);

    // rmi A, container gone: everything of A and C goes, and so does the shared base.
    env.images.roots = [];
    await env.client.remove({ key: 'container-1' });
    const after = await env.client.gc({ graceMs: 0 });
    expect(after.removed).toContain(base.diffId);
    const left = (await env.client.list({})).snapshots.map((s) => s.name);
    for (const n of [ra.chainId, rc.chainId, base.diffId]) expect(left).not.toContain(n);
  });
});

describe('gc and leases', () => {
  it('keeps a snapshot a lease holds, with its parents, until the lease ends', async () => {
    await env.client.gc({ graceMs: 0 });
    const blobs = env.layout.content.blobs;
    const base = putLayer(blobs, [{ name: 'lbase', type: 'file', data: Buffer.from('l') }]);
    const top = putLayer(blobs, [{ name: 'ltop', type: 'file' }]);
    const r = await env.client.unpack({
      layers: [base.descriptor, top.descriptor],
      diffIds: [base.diffId, top.diffId],
    });
    env.images.roots = [];
    // A client building something holds the chain's top in a lease (image-service's chain-roots).
    env.images.leased = [r.chainId];
    expect((await env.client.gc({ graceMs: 0 })).removed).toEqual([]);
    env.images.leased = [];
    expect((await env.client.gc({ graceMs: 0 })).removed.sort()).toEqual([r.chainId, base.diffId].sort());
  });
});

describe('gc and containers created before their rootfs', () => {
  it('keeps the chain a container claims, with its parents, until the claim ends', async () => {
    await env.client.gc({ graceMs: 0 });
    const blobs = env.layout.content.blobs;
    const base = putLayer(blobs, [{ name: 'cbase', type: 'file', data: Buffer.from('c') }]);
    const top = putLayer(blobs, [{ name: 'ctop', type: 'file' }]);
    const r = await env.client.unpack({
      layers: [base.descriptor, top.descriptor],
      diffIds: [base.diffId, top.diffId],
    });
    // The image is removed; a container record created on it has no snapshot yet (task-service).
    env.images.roots = [];
    env.tasks.claimed = [r.chainId];
    expect((await env.client.gc({ graceMs: 0 })).removed).toEqual([]);
    // Its prepare ran: the snapshot holds the chain, the claim is gone.
    await env.client.prepare({ key: 'claimed-container', parent: r.chainId });
    env.tasks.claimed = [];
    expect((await env.client.gc({ graceMs: 0 })).removed).toEqual([]);
    await env.client.remove({ key: 'claimed-container' });
    expect((await env.client.gc({ graceMs: 0 })).removed.sort()).toEqual([r.chainId, base.diffId].sort());
  });
});

// GC reads its roots from both services: without either it removes nothing. Once the service
// answers again (no image names the layer, no container claims it), the layer goes.
for (const who of ['task-service', 'image-service'] as const) {
  describe(`gc without the ${who}`, () => {
    it(`removes nothing and fails UNAVAILABLE naming the ${who}`, async () => {
      await env.client.gc({ graceMs: 0 });
      const l = putLayer(env.layout.content.blobs, [{ name: `without-${who}`, type: 'file' }]);
      const r = await env.client.unpack({ layers: [l.descriptor], diffIds: [l.diffId] });
      env.images.roots = [];
      await (who === 'task-service' ? env.tasks : env.images).stop();
      try {
        const e = await env.client.gc({ graceMs: 0 }).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(e).toBeInstanceOf(BerthError);
        expect((e as BerthError).code).toBe('UNAVAILABLE');
        expect((e as BerthError).message).toContain(who);
        expect((e as BerthError).message).toContain('nothing was removed');
        const names = (await env.client.list({})).snapshots.map((s) => s.name);
        expect(names).toContain(r.chainId);
      } finally {
        await (who === 'task-service' ? env.restartTasks() : env.restartImages());
      }
      expect((await env.client.gc({ graceMs: 0 })).removed).toEqual([r.chainId]);
    });
  });
}

describe('lstat of unpacked devices', () => {
  it('keeps whiteouts as 0/0 character devices in the layer snapshot', async () => {
    const blobs = env.layout.content.blobs;
    const l1 = putLayer(blobs, [{ name: 'gone', type: 'file' }]);
    const l2 = putLayer(blobs, [{ name: '.wh.gone', type: 'file' }]);
    const r = await env.client.unpack({
      layers: [l1.descriptor, l2.descriptor],
      diffIds: [l1.diffId, l2.diffId],
    });
    const v = await env.client.view({ key: 'wh-view', parent: r.chainId });
    const lower = (v.mounts[0]?.options.find((o) => o.startsWith('lowerdir=')) ?? '')
      .slice('lowerdir='.length)
      .split(':');
    const wh = lstatSync(join(lower[0] as string, 'gone'));
    expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
    await env.client.remove({ key: 'wh-view' });
  });
});

describe('configured bounds', () => {
  it('stops a layer at services.snapshot-service.maxLayerUncompressedBytes and commits nothing', async () => {
    const small = await startSnapshotEnv({ maxLayerUncompressedBytes: 100_000 });
    try {
      const blobs = small.layout.content.blobs;
      const fits = putLayer(blobs, [{ name: 'a', type: 'file', data: Buffer.alloc(50_000, 1) }], 'gzip');
      const bomb = putLayer(blobs, [{ name: 'b', type: 'file', data: Buffer.alloc(150_000, 2) }], 'gzip');
      const ok = await small.client.unpack({ layers: [fits.descriptor], diffIds: [fits.diffId] });
      expect(ok.applied).toBe(1);
      const err = await small.client
        .unpack({ layers: [fits.descriptor, bomb.descriptor], diffIds: [fits.diffId, bomb.diffId] })
        .catch((e: BerthError) => e);
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe('RESOURCE_EXHAUSTED');
      expect((err as BerthError).message).toContain('exceeds the limit of 100000 bytes');
      const names = (await small.client.list({})).snapshots.map((s) => s.name);
      expect(names).toEqual([fits.diffId]);
      // Only the committed layer's directory is on disk: the half-applied one was removed.
      expect(readdirSync(small.layout.snapshots)).toHaveLength(1);
    } finally {
      await small.stop();
    }
  });
});
