import { randomBytes } from 'node:crypto';
import {
  BERTH_VERSION,
  BerthError,
  Code,
  type Container,
  Service,
  type ServiceDef,
  ShimApi,
  SnapshotApi,
} from '@berth/api';
import {
  connectRedis,
  createLogger,
  type Handlers,
  keys,
  type Redis,
  type ServedService,
  serve,
  tryLock,
} from '@berth/kit';
import { startNats, startRedis, type TestServer } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { natsDeps } from '../deps.js';
import { createDomain, type Domain } from '../domain.js';

// A removal left unfinished (its record marked removing) and the reconcile's back-off of it
// (FreeRetries), on real NATS and Redis with a stand-in shim and snapshot-service on the node:
// what a repeated removal request and a removal that waited for the container's lock do to it.

let nats: TestServer;
let redisServer: TestServer;
let redis: Redis;
let nc: NatsConnection;
let shim: ServedService;
let snapshots: ServedService;
let domain: Domain;
const node = `n-${randomBytes(3).toString('hex')}`;
const log = createLogger({ service: Service.task, node, level: 'silent' });
/** How long a removal waits for a container's lock another holds, here. */
const LOCK_WAIT_MS = 300;

/** What the stand-in shim's `remove-files` does next; every call is counted. */
let removeFiles: () => Promise<void> = async () => undefined;
let removeFilesCalls = 0;

/** Handlers of `service` that refuse every operation (UNIMPLEMENTED), with `some` set. */
function only<S extends ServiceDef>(service: S, some: Partial<Handlers<S>>): Handlers<S> {
  const refuse = async () => {
    throw new BerthError(Code.UNIMPLEMENTED, 'not in this stand-in');
  };
  const all = Object.fromEntries(
    Object.keys(service.ops)
      .filter((op) => op !== 'info')
      .map((op) => [op, refuse]),
  );
  return { ...all, ...some } as unknown as Handlers<S>;
}

beforeAll(async () => {
  [nats, redisServer] = await Promise.all([startNats({ jetstream: false }), startRedis()]);
  redis = connectRedis(redisServer.url);
  await redis.connect();
  nc = await connect({ servers: nats.url });
  const serveOn = <S extends ServiceDef>(service: S, handlers: Handlers<S>) =>
    serve({ nc, service, version: BERTH_VERSION, node, log, handlers });
  shim = await serveOn(
    ShimApi,
    only(ShimApi, {
      state: async (req) => {
        throw new BerthError(Code.NOT_FOUND, `task ${req.id} not found`);
      },
      list: async () => ({ tasks: [] }),
      'remove-files': async () => {
        removeFilesCalls++;
        await removeFiles();
        return {};
      },
    }),
  );
  snapshots = await serveOn(SnapshotApi, only(SnapshotApi, { remove: async () => ({}) }));
});
beforeEach(async () => {
  await redis.flushdb();
  // A fresh replica: its back-off remembers nothing.
  domain = createDomain({ redis, deps: natsDeps(nc), env: { node, lockWaitMs: LOCK_WAIT_MS }, log });
  removeFiles = async () => undefined;
  removeFilesCalls = 0;
});
afterAll(async () => {
  await Promise.all([shim?.stop(1000), snapshots?.stop(1000)]);
  await nc?.close();
  await redis?.quit();
  await Promise.all([nats?.stop(), redisServer?.stop()]);
});

/** A container on the test node whose removal began and stopped half-way (marked removing). */
async function halfRemoved(name: string): Promise<Container> {
  const id = randomBytes(32).toString('hex');
  const now = new Date().toISOString();
  const c: Container = {
    id,
    namespace: 'test',
    name,
    image: { name: 'x', digest: `sha256:${'1'.repeat(64)}` },
    node,
    spec: {},
    snapshotKey: `containers/test/${id}`,
    labels: {},
    runtime: { name: 'io.berth.runc' },
    io: { terminal: false, stdin: false },
    stopSignal: 'SIGTERM',
    config: { image: 'x' },
    createdAt: now,
    updatedAt: now,
  };
  await domain.store.reserveName('test', name, id);
  await domain.store.put(c);
  await domain.store.markRemoving('test', id);
  return c;
}

describe('an unfinished removal backed off by the reconcile', () => {
  it('is tried on its node at once by a repeated removal request, not after the back-off', async () => {
    const c = await halfRemoved('refused');
    removeFiles = async () => {
      throw new BerthError(Code.INTERNAL, 'remove-files: device or resource busy');
    };
    expect((await domain.tasks.reconcile()).removed).toBe(0);
    expect(removeFilesCalls).toBe(1);
    // Backed off: the next pass does not ask the node.
    await domain.tasks.reconcile();
    expect(removeFilesCalls).toBe(1);
    // `berth rm` again (the remove op, neither forced nor in the background) asks it now.
    removeFiles = async () => undefined;
    await domain.tasks.removeContainer('test', 'refused', false);
    expect(removeFilesCalls).toBe(2);
    expect(await domain.store.get('test', c.id)).toBeUndefined();
  });

  it('is tried in the next pass when it failed waiting for the lock another remover held', async () => {
    const c = await halfRemoved('locked');
    const held = await tryLock(redis, keys.containerLock('test', c.id), 60_000);
    expect(held).toBeDefined();
    const first = await domain.tasks.reconcile();
    expect(first.removed).toBe(0);
    expect(removeFilesCalls).toBe(0);
    await held?.release();
    // The wait said nothing about the node: the next pass finishes the removal.
    expect((await domain.tasks.reconcile()).removed).toBe(1);
    expect(removeFilesCalls).toBe(1);
    expect(await domain.store.get('test', c.id)).toBeUndefined();
  });

  it('is still backed off when its node did not answer in time (DEADLINE_EXCEEDED under the lock)', async () => {
    const c = await halfRemoved('hanging');
    removeFiles = async () => {
      throw new BerthError(Code.DEADLINE_EXCEEDED, 'runc delete did not answer within 30000 ms');
    };
    await domain.tasks.reconcile();
    expect(removeFilesCalls).toBe(1);
    removeFiles = async () => undefined;
    expect((await domain.tasks.reconcile()).removed).toBe(0);
    expect(removeFilesCalls).toBe(1);
    expect((await domain.tasks.reconcile()).removed).toBe(1);
    expect(await domain.store.get('test', c.id)).toBeUndefined();
  });
});
