import { randomBytes } from 'node:crypto';
import type { Container } from '@berth/api';
import { connectRedis, createLogger, keys, type Redis, withLock } from '@berth/kit';
import { startRedis, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FreeRetries } from '../containers/free-retries.js';
import { ContainerManager } from '../containers/manager.js';
import type { Deps } from '../deps.js';
import { type ReconcileDeps, reconcileAll } from '../tasks/reconcile.js';
import { CHAIN_CLAIM_FIELD } from './scripts.js';
import { ContainerStore } from './store.js';

// The chain claims of containers created before their rootfs (createNamed) and their per-node
// index, on a real Redis: what `claimed-chains` answers (ContainerManager.claimedChains) after
// each way a claim is made and dropped, and for records a task-service without the index wrote.

let server: TestServer;
let redis: Redis;
let store: ContainerStore;

beforeAll(async () => {
  server = await startRedis();
  redis = connectRedis(server.url);
  await redis.connect();
});
beforeEach(async () => {
  // Each test starts with an empty Redis and a fresh replica (its one-time indexing not yet run).
  await redis.flushdb();
  store = new ContainerStore(redis);
});
afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

const CHAIN_A = `sha256:${'a'.repeat(64)}`;
const CHAIN_B = `sha256:${'b'.repeat(64)}`;

/** A record created before its rootfs (no mounts) on `node` from an image with chain `chainId`. */
function unmounted(ns: string, name: string, node: string, chainId: string): Container {
  const id = randomBytes(32).toString('hex');
  const now = new Date().toISOString();
  return {
    id,
    namespace: ns,
    name,
    image: { name: 'busybox', digest: `sha256:${'0'.repeat(64)}`, chainId },
    node,
    spec: {},
    snapshotKey: `containers/${ns}/${id}`,
    labels: {},
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'busybox' },
    createdAt: now,
    updatedAt: now,
  };
}

/** A replica's container manager on the test Redis: claimedChains needs no node service. */
function replica(): ContainerManager {
  return new ContainerManager(store, redis, {} as Deps, { node: 'n1' });
}

/** What `claimed-chains` answers for `node` on `m`, sorted. */
async function claimed(m: ContainerManager, node: string): Promise<string[]> {
  return (await m.claimedChains(node)).sort();
}

/** Stores `c` as a task-service from before the index did: the claim field, no index entry. */
async function createdByPreviousVersion(c: Container): Promise<void> {
  await store.createNamed(c);
  await redis.srem(keys.chainClaims(c.node), `${c.namespace}/${c.id}`);
}

describe('chain claims', () => {
  it("answers each node's claims from every namespace, keeping both of two containers on one chain", async () => {
    const m = replica();
    const a1 = unmounted('ns-a', 'a1', 'n1', CHAIN_A);
    const b1 = unmounted('ns-b', 'b1', 'n1', CHAIN_A);
    const b2 = unmounted('ns-b', 'b2', 'n1', CHAIN_B);
    const other = unmounted('ns-a', 'other', 'n2', CHAIN_B);
    // A record made with its rootfs claims nothing.
    const mounted = { ...unmounted('ns-a', 'mounted', 'n1', CHAIN_B), rootfs: [] };
    for (const c of [a1, b1, b2, other, mounted]) await store.createNamed(c);
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A, CHAIN_B]);
    expect(await claimed(m, 'n2')).toEqual([CHAIN_B]);
    expect(await claimed(m, 'n3')).toEqual([]);
    // The index holds the node's claims, one entry per container.
    expect((await redis.smembers(keys.chainClaims('n1'))).sort()).toEqual(
      [`ns-a/${a1.id}`, `ns-b/${b1.id}`, `ns-b/${b2.id}`].sort(),
    );
    // One of the two containers on CHAIN_A goes: the other still holds it.
    await store.delete(a1);
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A, CHAIN_B]);
    await store.delete(b1);
    expect(await claimed(m, 'n1')).toEqual([CHAIN_B]);
    expect(await claimed(m, 'n2')).toEqual([CHAIN_B]);
  });

  it('drops the claim with the rootfs mounts stored, and not when the record changed meanwhile', async () => {
    const m = replica();
    const c = unmounted('ns-a', 'prepared', 'n1', CHAIN_A);
    const twin = unmounted('ns-a', 'twin', 'n1', CHAIN_A);
    await store.createNamed(c);
    await store.createNamed(twin);
    const lockOpts = { ttlMs: 5000, waitMs: 1000, what: 'c' };
    // A record written again since (an update) keeps its claim: nothing is written.
    const changed = { ...twin, labels: { x: 'y' } };
    const refused = await withLock(redis, keys.containerLock('ns-a', twin.id), lockOpts, (lock) =>
      store.addRootfsAndRelease(changed, [], lock),
    );
    expect(refused).toBe(false);
    const added = await withLock(redis, keys.containerLock('ns-a', c.id), lockOpts, (lock) =>
      store.addRootfsAndRelease(c, [{ type: 'bind', source: '/x', options: [] }], lock),
    );
    expect(added).toBe(true);
    expect(await redis.hexists(keys.container('ns-a', c.id), CHAIN_CLAIM_FIELD)).toBe(0);
    expect(await redis.smembers(keys.chainClaims('n1'))).toEqual([`ns-a/${twin.id}`]);
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A]);
    await store.delete(twin);
    expect(await claimed(m, 'n1')).toEqual([]);
  });

  it('drops the claim on every removal of a record: delete, deleteForCollection, removeIfDone', async () => {
    const m = replica();
    const kept = unmounted('ns-b', 'kept', 'n1', CHAIN_A);
    await store.createNamed(kept);
    const removals: [string, (c: Container) => Promise<unknown>][] = [
      ['delete', (c) => store.delete(c)],
      ['deleteForCollection', (c) => store.deleteForCollection(c)],
      [
        'removeIfDone',
        async (c) => expect(await store.removeIfDone(c.namespace, c.id)).toMatchObject({ c: { id: c.id } }),
      ],
    ];
    for (const [how, remove] of removals) {
      const c = unmounted('ns-a', how.toLowerCase(), 'n1', CHAIN_B);
      await store.createNamed(c);
      expect(await claimed(m, 'n1'), how).toEqual([CHAIN_A, CHAIN_B]);
      await remove(c);
      expect(await redis.smembers(keys.chainClaims('n1')), how).toEqual([`ns-b/${kept.id}`]);
      expect(await claimed(m, 'n1'), how).toEqual([CHAIN_A]);
    }
  });

  it('reports the claims of records stored before the index, and indexes them once', async () => {
    const old = unmounted('ns-a', 'old', 'n1', CHAIN_A);
    const oldOther = unmounted('ns-b', 'old-other', 'n2', CHAIN_B);
    await createdByPreviousVersion(old);
    await createdByPreviousVersion(oldOther);
    // The index alone does not have them...
    expect(await store.claimedChains('n1')).toEqual([]);
    // ...but the first answer of a replica does, having indexed them.
    const m = replica();
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A]);
    expect(await claimed(m, 'n2')).toEqual([CHAIN_B]);
    expect(await redis.smembers(keys.chainClaims('n1'))).toEqual([`ns-a/${old.id}`]);
    // Indexed: a removal by this version drops it.
    await store.delete(old);
    expect(await claimed(m, 'n1')).toEqual([]);
  });

  it('fails, reporting nothing, while the claims stored before the index cannot be indexed, and indexes them on the next call', async () => {
    const old = unmounted('ns-a', 'old', 'n1', CHAIN_A);
    await createdByPreviousVersion(old);
    const m = replica();
    // A namespace key of the wrong type makes the one-time indexing fail (WRONGTYPE).
    await redis.set(keys.containers('broken'), 'x');
    await expect(m.claimedChains('n1')).rejects.toThrow(/WRONGTYPE/);
    await redis.del(keys.containers('broken'));
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A]);
  });

  it('neither reports nor keeps an index entry whose record lost its claim to the previous version', async () => {
    const m = replica();
    const gone = unmounted('ns-a', 'gone', 'n1', CHAIN_A);
    const mountedByOld = unmounted('ns-a', 'mounted-by-old', 'n1', CHAIN_B);
    await store.createNamed(gone);
    await store.createNamed(mountedByOld);
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A, CHAIN_B]);
    // A replica of the previous version removes one record and adds the other's mounts: it knows
    // only the field.
    await redis.del(keys.container('ns-a', gone.id));
    await redis.hdel(keys.container('ns-a', mountedByOld.id), CHAIN_CLAIM_FIELD);
    expect(await claimed(m, 'n1')).toEqual([]);
    expect(await redis.smembers(keys.chainClaims('n1'))).toEqual([]);
  });

  it('is indexed by a reconcile pass when a replica of the previous version stores it after the one-time indexing', async () => {
    const m = replica();
    expect(await claimed(m, 'n1')).toEqual([]);
    const late = unmounted('ns-a', 'late', 'n1', CHAIN_A);
    await createdByPreviousVersion(late);
    expect(await claimed(m, 'n1')).toEqual([]);
    const log = createLogger({ service: 'task', node: 'n1', level: 'silent' });
    const d: ReconcileDeps = {
      store,
      containers: {
        reconcileCreations: async () => 0,
        reconcileCollections: async () => 0,
        dropUnrecordedTasks: async () => 0,
      } as unknown as ContainerManager,
      log,
      heal: async (_c, t) => t,
      autoRemove: async () => undefined,
      remove: async () => undefined,
      collectRetries: new FreeRetries(),
      removeRetries: new FreeRetries(),
    };
    await reconcileAll(d);
    expect(await claimed(m, 'n1')).toEqual([CHAIN_A]);
  });
});
