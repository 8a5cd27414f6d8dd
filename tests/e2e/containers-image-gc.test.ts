// An image removed between a CRI CreateContainer's reply and the rootfs prepare that follows it
// (create-container with prepareAfterReply): the container record is stored and answered before
// its snapshot exists, so the image's chain must stay a GC root through the record until the
// snapshot is prepared on it, or the container is broken (its start fails: no parent snapshot).
// The image-, snapshot-services and shim run from dist; the task-service runs in this process,
// over the same NATS and Redis, with its snapshot-service port holding the prepare until the
// image is gone and collected: the order is made, not timed.
import { BERTH_VERSION, Code, ImageApi, Service, SnapshotApi, TaskApi } from '@berth/api';
import { call, connectRedis, createLogger, type Redis, type ServedService, serve } from '@berth/kit';
import {
  createDomain,
  createHandlers,
  type Deps,
  type Domain,
  type ExitTracking,
  natsDeps,
  startExitTracking,
} from '@berth/task-service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack } from './containers-stack.js';

const NS = 'default';
let s: ContainerStack;
let redis: Redis;
let domain: Domain;
let tracking: ExitTracking | undefined;
let served: ServedService | undefined;
/** Resolves once a prepare reached the snapshot-service port (and waits for `held`). */
let reached: Promise<void>;
let reach: () => void = () => undefined;
let held: Promise<void> = Promise.resolve();

beforeAll(async () => {
  s = await startContainerStack({
    only: ['image-service', 'snapshot-service', 'shim'],
    // The collection a removal leaves for after its reply starts at once.
    config: { services: { 'image-service': { gcDelayMs: 0 } } },
  });
  redis = connectRedis(s.redis.url);
  await redis.connect();
  const log = createLogger({ service: Service.task, node: s.node, level: 'silent' });
  const nats = natsDeps(s.nc);
  const deps: Deps = {
    ...nats,
    snapshots: (node) => {
      const real = nats.snapshots(node);
      return {
        ...real,
        prepare: async (req, opts) => {
          reach();
          await held;
          return real.prepare(req, opts);
        },
      };
    },
  };
  domain = createDomain({ redis, deps, env: { node: s.node }, log });
  tracking = await startExitTracking(domain, s.nc, log);
  served = await serve({
    nc: s.nc,
    service: TaskApi,
    version: BERTH_VERSION,
    node: s.node,
    log,
    handlers: createHandlers(domain),
  });
}, 120_000);

afterAll(async () => {
  tracking?.stop();
  await served?.stop(1000);
  await redis?.quit();
  await s?.stop();
}, 60_000);

const opts = () => ({ node: s.node, namespace: NS, timeoutMs: 30_000 });

/** Whether the node's snapshot-service has a snapshot of this key. */
async function snapshotExists(key: string): Promise<boolean> {
  try {
    await call(s.nc, SnapshotApi, 'stat', { key }, opts());
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === Code.NOT_FOUND) return false;
    throw err;
  }
}

describe('an image removed before a created container has its rootfs', () => {
  it('keeps its chain for the container until the container is removed', async () => {
    const image = await s.importBusybox('berth.test/busybox:gc-window');
    const chainId = image.chainId ?? '';
    expect(chainId).toMatch(/^sha256:/);
    let release: () => void = () => undefined;
    held = new Promise((resolve) => {
      release = resolve;
    });
    reached = new Promise((resolve) => {
      reach = resolve;
    });

    // As the CRI gateway's CreateContainer asks: the record from its image view, the rootfs after.
    const c = await call(
      s.nc,
      TaskApi,
      'create-container',
      {
        image: image.name,
        name: 'gc-window',
        network: 'none',
        cmd: ['sh', '-c', 'test -x /bin/busybox && exit 7'],
        imageRecord: image,
        prepareAfterReply: true,
      },
      opts(),
    );
    expect(c.rootfs).toBeUndefined();
    await reached;

    // As the gateway's RemoveImage asks (every container's use set aside, GC after the reply),
    // then a whole collection of content and snapshots while the prepare is still held.
    const removed = await call(
      s.nc,
      ImageApi,
      'remove',
      { name: image.name, force: true, gcLater: true },
      opts(),
    );
    expect(removed.removed).toEqual([image.name]);
    await expect(call(s.nc, ImageApi, 'get', { name: image.name }, opts())).rejects.toMatchObject({
      code: Code.NOT_FOUND,
    });
    expect((await call(s.nc, ImageApi, 'gc', {}, opts())).snapshots).toBe('done');
    expect(await snapshotExists(chainId)).toBe(true);

    release();
    await domain.containers.settled(NS, c.id);
    const stored = await call(s.nc, TaskApi, 'get-container', { id: c.id }, opts());
    expect(stored.container.rootfs?.length).toBeGreaterThan(0);
    // Collected again with the container prepared: its snapshot keeps the chain.
    expect((await call(s.nc, ImageApi, 'gc', {}, opts())).snapshots).toBe('done');
    expect(await snapshotExists(chainId)).toBe(true);

    // The container starts on that chain and runs its command in the image's root filesystem.
    await call(s.nc, TaskApi, 'create', { id: c.id, start: true }, opts());
    const exit = await call(s.nc, TaskApi, 'wait', { id: c.id, timeoutMs: 20_000 }, opts());
    expect(exit.exitCode).toBe(7);

    // Once the container is gone, nothing holds the chain: the next collection takes it.
    await call(s.nc, TaskApi, 'delete-container', { id: c.id, force: true }, opts());
    expect(await snapshotExists(c.snapshotKey)).toBe(false);
    expect((await call(s.nc, ImageApi, 'gc', {}, opts())).snapshots).toBe('done');
    expect(await snapshotExists(chainId)).toBe(false);
  });
});
