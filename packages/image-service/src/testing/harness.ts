// Test environment of the image-service: real redis-server, nats-server and docker-registry from
// @berth/testing, a temp state root and a random node id per test file; services are built from the
// domain class. The task-service is a stand-in over NATS (see task-stand-in.ts) the tests control.
import { randomUUID } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, TaskApi } from '@berth/api';
import { call, connectNats, connectRedis, createLogger, hostLayout, type Redis } from '@berth/kit';
import { startNats, startRedis, startRegistry, type TestServer, tempDir } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { ImageService, type ImageServicePorts } from '../images/service-core.js';
import type { ImageSettings } from '../settings.js';
import { serveTaskStandIn, type TaskStandIn } from './task-stand-in.js';

export interface ImageEnv {
  redisServer: TestServer;
  registry: TestServer & { host: string };
  nats: TestServer;
  nc: NatsConnection;
  /** The stand-in task-service: set `tasks.containers` to make an image in use; `tasks.stop()` to drop it. */
  tasks: TaskStandIn;
  stateRoot: string;
  node: string;
  redis: Redis;
  blobsDir: string;
  ingestDir: string;
  /** A fresh domain object (own Redis connection when `ownRedis`), as one replica would be. */
  service(o?: {
    settings?: Partial<ImageSettings>;
    ports?: Partial<ImageServicePorts>;
    ownRedis?: boolean;
    /** Own Redis connection to this URL (a relay in front of the test Redis, to cut it off). */
    redisUrl?: string;
    dockerConfig?: string;
  }): ImageService;
  /** Blob files currently committed. */
  blobFiles(): Promise<string[]>;
  /** Entries in the ingest directory. */
  ingestEntries(): Promise<string[]>;
  stop(): Promise<void>;
}

/** Default test settings: quick lock expiry, short stall timeout. */
export const testSettings: ImageSettings = {
  maxConcurrentDownloads: 3,
  progressTimeoutMs: 10_000,
  blobLockTtlMs: 2_000,
  blobLockWaitMs: 60_000,
  hosts: {},
  insecureRegistries: [],
  hostsDirs: [],
  unpackTimeoutMs: 10_000,
  leaseTtlMs: 60_000,
  gcDelayMs: 0,
};

export async function startImageEnv(o: { htpasswd?: string } = {}): Promise<ImageEnv> {
  const [redisServer, nats, registry, stateRoot] = await Promise.all([
    startRedis({ appendonly: false }),
    startNats({ jetstream: false }),
    startRegistry(o.htpasswd ? { htpasswd: o.htpasswd } : {}),
    tempDir('image-state'),
  ]);
  const node = `t${randomUUID().slice(0, 8)}`;
  const layout = hostLayout({ stateRoot, runRoot: join(stateRoot, 'run') });
  const redis = connectRedis(redisServer.url);
  await redis.connect();
  const nc = await connectNats({ url: nats.url, name: 'image-test' });
  const tasks = await serveTaskStandIn(nc, node);
  const extra: Redis[] = [];
  const log = createLogger({ service: 'image-service-test', node, level: process.env.TEST_LOG ?? 'silent' });
  const env: ImageEnv = {
    redisServer,
    registry,
    nats,
    nc,
    tasks,
    stateRoot,
    node,
    redis,
    blobsDir: layout.content.blobs,
    ingestDir: layout.content.ingest,
    service(so = {}) {
      let r = redis;
      if (so.ownRedis || so.redisUrl) {
        r = connectRedis(so.redisUrl ?? redisServer.url);
        extra.push(r);
      }
      return new ImageService({
        redis: r,
        node,
        settings: { ...testSettings, ...so.settings },
        blobsDir: layout.content.blobs,
        ingestDir: layout.content.ingest,
        log,
        dockerConfig: so.dockerConfig ?? join(stateRoot, 'no-docker-config.json'),
        ports: {
          unpack: async () => {
            throw new BerthError(
              Code.UNAVAILABLE,
              'snapshot-service is unavailable: no responder for "unpack"',
            );
          },
          snapshotGc: async () => {
            throw new BerthError(Code.UNAVAILABLE, 'snapshot-service is unavailable: no responder for "gc"');
          },
          // As service.ts wires it: the task-service over NATS (here the stand-in).
          containersUsing: async (ns, images) =>
            (
              await call(nc, TaskApi, 'list-containers', { node, images, limit: 1 }, { namespace: ns })
            ).containers.map((i) => i.container.id),
          publish: () => undefined,
          ...so.ports,
        },
      });
    },
    blobFiles: () => readdir(layout.content.blobs).catch(() => []),
    ingestEntries: () => readdir(layout.content.ingest).catch(() => []),
    async stop() {
      for (const r of extra) r.disconnect();
      redis.disconnect();
      await env.tasks.stop();
      await nc.close();
      await Promise.all([
        redisServer.stop(),
        nats.stop(),
        registry.stop(),
        rm(stateRoot, { recursive: true, force: true }),
      ]);
    },
  };
  return env;
}

/** Runs `p` and returns the BerthError it rejects with (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<BerthError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error('expected a rejection, but the promise resolved');
}
