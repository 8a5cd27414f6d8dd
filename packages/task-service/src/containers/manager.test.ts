import { randomBytes } from 'node:crypto';
import {
  BerthError,
  Code,
  type CreateContainerRequest,
  type ImageRecord,
  type ListSnapshotsRequest,
  type PrepareRequest,
  type SnapshotInfo,
} from '@berth/api';
import { connectRedis, keys, type Redis, tryLock } from '@berth/kit';
import { startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Deps } from '../deps.js';
import { ContainerStore } from '../store/store.js';
import { ContainerManager, SnapshotLabel } from './manager.js';

// The container manager's create and snapshot sweep over a real Redis, with the node's snapshot
// service as an in-memory stand-in that keeps what it was asked to make (the services over NATS
// are covered by service.test.ts and the e2e suites).

let redisServer: TestServer;
let redis: Redis;
const node = `n-${randomBytes(3).toString('hex')}`;
const LOCK_TTL_MS = 2_000;

/** The snapshots a stand-in snapshot-service holds, by key; `gate` holds prepares until opened. */
class Snapshots {
  readonly held = new Map<string, SnapshotInfo>();
  prepares = 0;
  lists = 0;
  gate: Promise<void> = Promise.resolve();
  failPrepare: BerthError | undefined;
  failRemove: BerthError | undefined;

  async prepare(req: PrepareRequest) {
    this.prepares++;
    await this.gate;
    if (this.failPrepare) throw this.failPrepare;
    const now = new Date().toISOString();
    this.held.set(req.key, {
      name: req.key,
      ...(req.parent ? { parent: req.parent } : {}),
      kind: 'active',
      labels: req.labels ?? {},
      createdAt: now,
      updatedAt: now,
    });
    return { mounts: [{ type: 'bind', source: `/snap/${req.key}`, options: ['rbind'] }] };
  }

  async remove(req: { key: string }) {
    if (this.failRemove) throw this.failRemove;
    if (!this.held.delete(req.key)) throw new BerthError(Code.NOT_FOUND, `snapshot "${req.key}" not found`);
    return {};
  }

  async list(req: ListSnapshotsRequest) {
    this.lists++;
    // The one filter the manager sends: the container label is present.
    expect(req.filters).toEqual([`labels."${SnapshotLabel.container}"`]);
    return { snapshots: [...this.held.values()].filter((s) => SnapshotLabel.container in s.labels) };
  }

  /** A snapshot as a creation of container `id` in `ns` would leave it, made `ageMs` ago. */
  orphan(ns: string, id: string, ageMs: number): string {
    const key = `containers/${ns}/${id}`;
    const at = new Date(Date.now() - ageMs).toISOString();
    this.held.set(key, {
      name: key,
      kind: 'active',
      labels: { [SnapshotLabel.container]: id, [SnapshotLabel.namespace]: ns },
      createdAt: at,
      updatedAt: at,
    });
    return key;
  }
}

function image(): ImageRecord {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const now = new Date().toISOString();
  return {
    name: 'docker.io/library/busybox:latest',
    target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d('a'), size: 1 },
    manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d('a'), size: 1 },
    configDigest: d('b'),
    config: { rootfs: { type: 'layers', diff_ids: [d('d')] }, config: { Cmd: ['sh'] } },
    chainId: d('c'),
    size: 1,
    labels: {},
    createdAt: now,
    updatedAt: now,
  };
}

let snaps: Snapshots;
let store: ContainerStore;
let manager: ContainerManager;

function deps(): Deps {
  const unused = () => {
    throw new Error('not used by these tests');
  };
  return {
    images: unused,
    snapshots: () => snaps as unknown as ReturnType<Deps['snapshots']>,
    shim: unused,
    publish: () => undefined,
  };
}

beforeAll(async () => {
  redisServer = await startRedis();
  redis = connectRedis(redisServer.url);
  await redis.connect();
});
afterAll(async () => {
  await redis?.quit();
  await redisServer?.stop();
});
beforeEach(async () => {
  await redis.flushall();
  snaps = new Snapshots();
  store = new ContainerStore(redis);
  manager = new ContainerManager(store, redis, deps(), { node, lockTtlMs: LOCK_TTL_MS });
});

const request = (name: string): CreateContainerRequest => ({
  image: 'docker.io/library/busybox:latest',
  name,
  imageRecord: image(),
});

describe('ContainerManager.create', () => {
  it('stores the record on the snapshot it prepared, labelled with the container', async () => {
    const c = await manager.create('ns1', request('web'));
    expect(c.snapshotKey).toBe(`containers/ns1/${c.id}`);
    expect(c.rootfs).toEqual([{ type: 'bind', source: `/snap/${c.snapshotKey}`, options: ['rbind'] }]);
    expect(snaps.held.get(c.snapshotKey)?.labels).toEqual({
      [SnapshotLabel.container]: c.id,
      [SnapshotLabel.namespace]: 'ns1',
    });
    expect(await store.get('ns1', c.id)).toMatchObject({ id: c.id, name: 'web' });
    expect(await store.creating('ns1')).toEqual([]);
    // The lock went with the commit.
    expect(await redis.exists(keys.containerLock('ns1', c.id))).toBe(0);
  });

  it('prepares the snapshot while the intent is on its way, not after its answer', async () => {
    // The intent's answer is held back: the snapshot must be prepared meanwhile.
    let answer!: () => void;
    const held = new Promise<void>((r) => {
      answer = r;
    });
    const slow = new (class extends ContainerStore {
      override async beginCreateNamed(...args: Parameters<ContainerStore['beginCreateNamed']>) {
        await super.beginCreateNamed(...args);
        await held;
      }
    })(redis);
    const m = new ContainerManager(slow, redis, deps(), { node, lockTtlMs: LOCK_TTL_MS });
    const made = m.create('ns1', request('early'));
    await until(async () => snaps.held.size === 1);
    const [intent] = await store.creating('ns1');
    expect(intent).toMatchObject({ name: 'early', node });
    expect([...snaps.held.keys()]).toEqual([`containers/ns1/${intent?.id}`]);
    answer();
    const c = await made;
    expect(c.id).toBe(intent?.id);
    expect(await store.creating('ns1')).toEqual([]);
  });

  it('removes the snapshot it prepared when the name is taken, and keeps the holder', async () => {
    const first = await manager.create('ns1', request('dup'));
    await expect(manager.create('ns1', request('dup'))).rejects.toMatchObject({ code: Code.ALREADY_EXISTS });
    // Only the first container's snapshot is left; its name still points at it.
    expect([...snaps.held.keys()]).toEqual([first.snapshotKey]);
    expect(await redis.get(keys.containerName('ns1', 'dup'))).toBe(first.id);
    expect(await store.creating('ns1')).toEqual([]);
  });

  it('leaves no name, intent or snapshot when the prepare fails', async () => {
    snaps.failPrepare = new BerthError(Code.NOT_FOUND, 'parent snapshot "x" not found');
    await expect(manager.create('ns1', request('nosnap'))).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect(snaps.held.size).toBe(0);
    expect(await store.creating('ns1')).toEqual([]);
    expect(await redis.exists(keys.containerName('ns1', 'nosnap'))).toBe(0);
    // The name is free again.
    snaps.failPrepare = undefined;
    await manager.create('ns1', request('nosnap'));
  });
});

describe('ContainerManager.reconcileSnapshots', () => {
  const id = () => randomBytes(32).toString('hex');

  it('removes an old container snapshot nothing names, and keeps every other', async () => {
    const old = LOCK_TTL_MS + 1_000;
    const orphan = snaps.orphan('ns1', id(), old);
    const young = snaps.orphan('ns1', id(), 0);
    const live = await manager.create('ns1', request('live'));
    // Made long ago as far as the sweep can tell: the record names it.
    snaps.held.set(live.snapshotKey, {
      ...(snaps.held.get(live.snapshotKey) as SnapshotInfo),
      createdAt: new Date(Date.now() - old).toISOString(),
    });
    const creatingId = id();
    const creating = snaps.orphan('ns1', creatingId, old);
    await store.beginCreateNamed('ns1', {
      id: creatingId,
      name: 'half',
      node,
      bridge: false,
      startedAt: new Date().toISOString(),
    });
    const collectingId = id();
    const collecting = snaps.orphan('ns1', collectingId, old);
    await redis.hset(keys.containersCollecting('ns1'), collectingId, '{}');
    const lockedId = id();
    const locked = snaps.orphan('ns2', lockedId, old);
    const lock = await tryLock(redis, keys.containerLock('ns2', lockedId), 10_000);
    // Not a container's: an image layer, and a labelled snapshot under another key.
    snaps.held.set('sha256:layer', {
      name: 'sha256:layer',
      kind: 'committed',
      labels: {},
      createdAt: new Date(0).toISOString(),
      updatedAt: new Date(0).toISOString(),
    });
    const otherKey = `elsewhere/ns1/${id()}`;
    snaps.held.set(otherKey, { ...(snaps.held.get(orphan) as SnapshotInfo), name: otherKey });

    expect(await manager.reconcileSnapshots(node)).toBe(1);
    expect(snaps.held.has(orphan)).toBe(false);
    for (const kept of [young, live.snapshotKey, creating, collecting, locked, 'sha256:layer', otherKey]) {
      expect(snaps.held.has(kept)).toBe(true);
    }
    // Its lock free, the locked one goes on the next pass.
    await lock?.release();
    expect(await manager.reconcileSnapshots(node)).toBe(1);
    expect(snaps.held.has(locked)).toBe(false);
  });

  it('sweeps one period after it starts and at most once a period, and reports a node it cannot list', async () => {
    const period = 300;
    const m = new ContainerManager(store, redis, deps(), {
      node,
      lockTtlMs: LOCK_TTL_MS,
      snapshotSweepMs: period,
    });
    const orphan = snaps.orphan('ns1', id(), LOCK_TTL_MS + 1_000);
    const errors: string[] = [];
    const onError = (_err: unknown, n: string) => errors.push(n);
    // Not yet: a replica's first reconcile lists nothing.
    expect(await m.sweepSnapshots(['other-node'], onError)).toBe(0);
    expect(snaps.lists).toBe(0);
    await new Promise((r) => setTimeout(r, period + 50));
    expect(await m.sweepSnapshots(['other-node'], onError)).toBe(1);
    expect(snaps.held.has(orphan)).toBe(false);
    // Both nodes were listed (the stand-in answers for any node).
    expect(snaps.lists).toBe(2);
    snaps.orphan('ns1', id(), LOCK_TTL_MS + 1_000);
    expect(await m.sweepSnapshots(['other-node'], onError)).toBe(0);
    expect(snaps.lists).toBe(2);
    expect(errors).toEqual([]);

    await new Promise((r) => setTimeout(r, period + 50));
    snaps.list = async () => {
      throw new BerthError(Code.UNAVAILABLE, 'no snapshot-service');
    };
    expect(await m.sweepSnapshots([], onError)).toBe(0);
    expect(errors).toEqual([node]);
  });
});

async function until(cond: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
