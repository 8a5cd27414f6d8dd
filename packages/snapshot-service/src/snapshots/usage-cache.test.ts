import { mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapshotKind } from '@berth/api';
import { connectRedis, type Redis } from '@berth/kit';
import { startRedis, type TestServer, tempDir } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Snapshotter } from './snapshotter.js';
import { type Usage, walkUsage } from './usage.js';
import { USAGE_IDLE_PERIODS, UsageCache, type UsagePass } from './usage-cache.js';

// The usage cache behind `usage` of active snapshots (kubelet's ListContainerStats asks for every
// container every ~10 s). Walks are counted by the walker the cache is given; the refresh is
// driven by refresh() and an injected clock, except in the one test of the timer itself.

let server: TestServer;
let redis: Redis;
let base: string;
let seq = 0;

beforeAll(async () => {
  server = await startRedis({ appendonly: false });
  redis = await connectRedis(server.url);
  base = await tempDir('usage-cache');
});

afterAll(async () => {
  redis.disconnect();
  await server.stop();
  await rm(base, { recursive: true, force: true });
});

const PERIOD = 10_000;

/** A real walker that counts its walks. */
function countingWalker() {
  const w = {
    walks: 0,
    walk: async (dir: string): Promise<Usage> => {
      w.walks++;
      return walkUsage(dir);
    },
  };
  return w;
}

/**
 * A walker whose walks wait until released, answering { size: n, inodes: n } for the n-th walk:
 * the tests see which walks start, how many run at once, and settle them one by one.
 */
function gatedWalker() {
  const held: { dir: string; go: () => void }[] = [];
  const starts: { n: number; resolve: () => void }[] = [];
  const g = {
    calls: 0,
    running: 0,
    maxRunning: 0,
    dirs: [] as string[],
    walk: async (dir: string): Promise<Usage> => {
      const n = ++g.calls;
      g.dirs.push(dir);
      g.running++;
      g.maxRunning = Math.max(g.maxRunning, g.running);
      for (const s of starts.filter((s) => s.n <= g.calls)) s.resolve();
      await new Promise<void>((go) => held.push({ dir, go }));
      g.running--;
      return { size: n, inodes: n };
    },
    /** Resolves once `n` walks have started. */
    started: (n: number) =>
      g.calls >= n ? Promise.resolve() : new Promise<void>((resolve) => starts.push({ n, resolve })),
    /** Lets the oldest held walk finish. */
    releaseOne: () => held.shift()?.go(),
    releaseAll: () => {
      for (const h of held.splice(0)) h.go();
    },
  };
  return g;
}

/** A Snapshotter on its own node and root whose usage cache walks with `walk`, driven by hand. */
function snapshotter(walk: (dir: string) => Promise<Usage>) {
  const clock = { now: 1_700_000_000_000 };
  const cache = new UsageCache({
    walk,
    periodMs: PERIOD,
    concurrency: 2,
    now: () => clock.now,
    timer: false,
  });
  const node = `usage${++seq}`;
  const sn = new Snapshotter(redis, node, join(base, node), { usage: cache });
  return { sn, cache, clock };
}

/** Prepares active snapshot `key` with `files` files in its upper directory; returns its id and fs. */
async function active(sn: Snapshotter, key: string, files: number) {
  const c = await sn.create(SnapshotKind.active, { key });
  addFiles(c.fs, files, 'a');
  return { id: c.record.id, fs: c.fs };
}

function addFiles(dir: string, n: number, prefix: string): void {
  for (let i = 0; i < n; i++) writeFileSync(join(dir, `${prefix}${i}`), 'x');
}

describe('usage of an active snapshot', () => {
  it('walks on the first ask, answers from the cache within the period, and the refresh brings new files', async () => {
    const w = countingWalker();
    const { sn, cache, clock } = snapshotter(w.walk);
    const { id, fs } = await active(sn, 'c', 3);
    const first = await sn.usage('c');
    expect(first).toMatchObject({ inodes: 4, measuredAt: new Date(clock.now).toISOString() });
    expect(w.walks).toBe(1);

    addFiles(fs, 5, 'b');
    clock.now += PERIOD / 2;
    expect(await sn.usage('c')).toEqual(first);
    expect(w.walks).toBe(1);

    clock.now += PERIOD / 2;
    expect(await cache.refresh()).toEqual({ walked: [id], expired: [] });
    expect(w.walks).toBe(2);
    expect(await sn.usage('c')).toMatchObject({ inodes: 9, measuredAt: new Date(clock.now).toISOString() });
    expect(w.walks).toBe(2);
    await sn.close();
  });

  it('fresh walks now and its figure replaces the cached one', async () => {
    const w = countingWalker();
    const { sn } = snapshotter(w.walk);
    const { fs } = await active(sn, 'c', 1);
    expect((await sn.usage('c')).inodes).toBe(2);
    addFiles(fs, 2, 'b');
    expect((await sn.usage('c')).inodes).toBe(2);
    expect((await sn.usage('c', { fresh: true })).inodes).toBe(4);
    expect(w.walks).toBe(2);
    expect((await sn.usage('c')).inodes).toBe(4);
    expect(w.walks).toBe(2);
    await sn.close();
  });

  it('removal drops the entry and its refresh', async () => {
    const w = countingWalker();
    const { sn, cache } = snapshotter(w.walk);
    const { id } = await active(sn, 'c', 1);
    await sn.usage('c');
    expect(cache.has(id)).toBe(true);
    await sn.remove('c');
    expect(cache.has(id)).toBe(false);
    expect(await cache.refresh()).toEqual({ walked: [], expired: [] });
    expect(w.walks).toBe(1);
    await sn.close();
  });

  it('a removal during a walk discards that walk', async () => {
    const g = gatedWalker();
    const { sn, cache } = snapshotter(g.walk);
    const { id } = await active(sn, 'c', 1);
    const first = sn.usage('c');
    await g.started(1);
    g.releaseOne();
    await first;
    const pass = cache.refresh();
    await g.started(2);
    await sn.remove('c');
    g.releaseOne();
    expect(await pass).toEqual({ walked: [id], expired: [] });
    expect(cache.has(id)).toBe(false);
    await sn.close();
  });

  it('commit drops the entry; usage answers what the commit measured', async () => {
    const w = countingWalker();
    const { sn, cache } = snapshotter(w.walk);
    const { id, fs } = await active(sn, 'c', 1);
    await sn.usage('c');
    addFiles(fs, 2, 'b');
    await sn.commit({ key: 'c', name: 'done' });
    expect(cache.has(id)).toBe(false);
    // The commit walked the directory itself, now: not the cached figure.
    expect(await sn.usage('done')).toEqual({ size: expect.any(Number), inodes: 4 });
    expect(w.walks).toBe(1);
    await sn.close();
  });

  it('an entry not asked for in a few periods leaves the refresh; the next ask walks again', async () => {
    const w = countingWalker();
    const { sn, cache, clock } = snapshotter(w.walk);
    const { id } = await active(sn, 'c', 1);
    await sn.usage('c');
    clock.now += PERIOD * (USAGE_IDLE_PERIODS - 1);
    await sn.usage('c');
    clock.now += PERIOD * (USAGE_IDLE_PERIODS - 1);
    expect(await cache.refresh()).toEqual({ walked: [id], expired: [] });
    clock.now += PERIOD;
    expect(await cache.refresh()).toEqual({ walked: [], expired: [id] });
    expect(cache.has(id)).toBe(false);
    expect(await cache.refresh()).toEqual({ walked: [], expired: [] });
    expect(w.walks).toBe(2);
    await sn.usage('c');
    expect(w.walks).toBe(3);
    await sn.close();
  });

  it('answers NOT_FOUND when the directory is gone (another replica removed it)', async () => {
    const { sn } = snapshotter(walkUsage);
    const { fs } = await active(sn, 'c', 1);
    await rm(join(fs, '..'), { recursive: true });
    await expect(sn.usage('c')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await sn.close();
  });
});

describe('the usage cache', () => {
  const dir = () => {
    const d = join(base, `d${++seq}`);
    mkdirSync(d);
    return d;
  };

  it('shares one walk among concurrent first asks', async () => {
    const g = gatedWalker();
    const cache = new UsageCache({ walk: g.walk, periodMs: PERIOD, concurrency: 2, timer: false });
    const d = dir();
    const asks = [1, 2, 3, 4, 5].map(() => cache.cached('7', d));
    await g.started(1);
    g.releaseAll();
    const answers = await Promise.all(asks);
    expect(g.calls).toBe(1);
    expect(new Set(answers).size).toBe(1);
    expect(answers[0]).toMatchObject({ size: 1, inodes: 1 });
    await cache.close();
  });

  it('a first walk that fails leaves nothing behind', async () => {
    let fail = true;
    const cache = new UsageCache({
      walk: async (d) => {
        if (fail) throw Object.assign(new Error('EIO'), { code: 'EIO' });
        return walkUsage(d);
      },
      periodMs: PERIOD,
      concurrency: 1,
      timer: false,
    });
    const d = dir();
    await expect(cache.cached('1', d)).rejects.toMatchObject({ code: 'EIO' });
    expect(cache.has('1')).toBe(false);
    fail = false;
    expect((await cache.cached('1', d)).inodes).toBe(1);
    await cache.close();
  });

  it('bounds walks across snapshots, starts a pass only for idle entries, and serves asks first', async () => {
    const g = gatedWalker();
    const cache = new UsageCache({ walk: g.walk, periodMs: PERIOD, concurrency: 2, timer: false });
    const dirs = [dir(), dir(), dir(), dir()];
    const firsts = dirs.map((d, i) => cache.cached(String(i), d));
    await g.started(2);
    expect(g.running).toBe(2);
    expect(g.calls).toBe(2);
    // Each walk that ends lets one queued walk start.
    g.releaseOne();
    await g.started(3);
    g.releaseOne();
    await g.started(4);
    g.releaseAll();
    await Promise.all(firsts);

    // Walks 5 and 6 run, 7 and 8 wait.
    const pass = cache.refresh();
    await g.started(6);
    // A second pass while the first one's walks are queued or running walks nothing again.
    expect(await cache.refresh()).toEqual({ walked: [], expired: [] });
    // A first ask, queued behind them, takes the first slot freed.
    const d4 = dir();
    const first = cache.cached('4', d4);
    g.releaseOne();
    await g.started(7);
    expect(g.dirs[6]).toBe(d4);
    g.releaseAll();
    await g.started(9);
    g.releaseAll();
    expect((await pass).walked).toEqual(['0', '1', '2', '3']);
    expect(await first).toMatchObject({ size: 7 });
    expect(g.calls).toBe(9);
    expect(g.maxRunning).toBe(2);
    await cache.close();
  });

  it('never overlaps walks of one snapshot: a fresh ask waits for the running walk, then walks', async () => {
    const g = gatedWalker();
    const cache = new UsageCache({ walk: g.walk, periodMs: PERIOD, concurrency: 4, timer: false });
    const d = dir();
    const first = cache.cached('1', d);
    await g.started(1);
    g.releaseAll();
    await first;
    const pass = cache.refresh();
    await g.started(2);
    const fresh = cache.fresh('1', d);
    // The refresh's walk started before the ask: the fresh ask does not take its figure, and
    // starts no walk beside it.
    g.releaseOne();
    await pass;
    await g.started(3);
    expect(g.maxRunning).toBe(1);
    g.releaseAll();
    expect(await fresh).toMatchObject({ size: 3 });
    expect(await cache.cached('1', d)).toMatchObject({ size: 3 });
    expect(g.calls).toBe(3);
    await cache.close();
  });

  it('refreshes on its own timer, which stops with close', async () => {
    const passes: UsagePass[] = [];
    let onPass: (() => void) | undefined;
    const cache = new UsageCache({
      walk: walkUsage,
      periodMs: 20,
      concurrency: 1,
      onPass: (p) => {
        passes.push(p);
        onPass?.();
      },
    });
    const d = dir();
    expect((await cache.cached('1', d)).inodes).toBe(1);
    addFiles(d, 2, 'f');
    await new Promise<void>((resolve) => {
      onPass = resolve;
    });
    expect(passes.at(-1)).toEqual({ walked: ['1'], expired: [] });
    expect((await cache.cached('1', d)).inodes).toBe(3);
    await cache.close();
    expect(cache.has('1')).toBe(false);
    // Closed: asks still answer, from a walk of their own, and add nothing.
    expect((await cache.cached('1', d)).inodes).toBe(3);
    expect(cache.has('1')).toBe(false);
  });
});
