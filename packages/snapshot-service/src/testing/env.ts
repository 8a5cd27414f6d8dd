// Test environment of the snapshot-service: real nats-server and redis-server from @berth/testing,
// a temp state root and a random node id; replicas are real `serve` instances on that node. The
// image-service and task-service GC asks for its roots are stand-ins over NATS (image-stand-in.ts,
// task-stand-in.ts) the tests control.
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Service, SnapshotApi } from '@berth/api';
import {
  type Client,
  type Config,
  client,
  connectNats,
  connectRedis,
  createLogger,
  hostLayout,
  type Redis,
  type ServedService,
  serve,
} from '@berth/kit';
import { startNats, startRedis, type TestServer, tempDir } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { createService, type SnapshotService } from '../service.js';
import { type ImageStandIn, serveImageStandIn } from './image-stand-in.js';
import { serveTaskStandIn, type TaskStandIn } from './task-stand-in.js';

/** Servers, a state root and clients for one test file. */
export interface SnapshotEnv {
  nats: TestServer;
  redisServer: TestServer;
  stateRoot: string;
  node: string;
  config: Config;
  layout: ReturnType<typeof hostLayout>;
  nc: NatsConnection;
  redis: Redis;
  client: Client<typeof SnapshotApi>;
  /** The stand-in image-service: `images.roots` are GC's image roots; `images.stop()` drops it. */
  images: ImageStandIn;
  /** Serves a fresh stand-in image-service (after `images.stop()`), as `images`. */
  restartImages(): Promise<void>;
  /** The stand-in task-service: `tasks.claimed` are GC's container roots; `tasks.stop()` drops it. */
  tasks: TaskStandIn;
  /** Serves a fresh stand-in task-service (after `tasks.stop()`), as `tasks`. */
  restartTasks(): Promise<void>;
  /** Starts one more replica of the service on the same node (own connections). */
  replica(settings?: Record<string, unknown>): Promise<ServedService>;
  stop(): Promise<void>;
}

export async function startSnapshotEnv(settings: Record<string, unknown> = {}): Promise<SnapshotEnv> {
  const [nats, redisServer, stateRoot] = await Promise.all([
    startNats({ jetstream: false }),
    startRedis({ appendonly: false }),
    tempDir('snap-state'),
  ]);
  const node = `t${randomUUID().slice(0, 8)}`;
  const config: Config = {
    natsUrl: nats.url,
    redisUrl: redisServer.url,
    nodeId: node,
    stateRoot,
    runRoot: join(stateRoot, 'run'),
    logLevel: 'silent',
    shutdownGraceMs: 1000,
    services: { [Service.snapshot]: settings },
  };
  const layout = hostLayout(config);
  const conns: { nc: NatsConnection; redis: Redis; served: ServedService; svc: SnapshotService }[] = [];
  const replica = async (extra: Record<string, unknown> = {}) => {
    const nc = await connectNats({ url: nats.url, name: 'snapshot-test' });
    const redis = connectRedis(redisServer.url);
    await redis.connect();
    const log = createLogger({ service: Service.snapshot, node, level: process.env.TEST_LOG ?? 'silent' });
    const cfg = { ...config, services: { [Service.snapshot]: { ...settings, ...extra } } };
    const svc = createService({ config: cfg, log, nc, redis, node, layout });
    const served = await serve({
      nc,
      service: SnapshotApi,
      version: '0.0.0-test',
      node,
      log,
      handlers: svc.handlers,
    });
    conns.push({ nc, redis, served, svc });
    return served;
  };
  await replica();
  const nc = await connectNats({ url: nats.url, name: 'snapshot-test-client' });
  const redis = connectRedis(redisServer.url);
  await redis.connect();
  const env: SnapshotEnv = {
    nats,
    redisServer,
    stateRoot,
    node,
    config,
    layout,
    nc,
    redis,
    client: client(nc, SnapshotApi, { node }),
    images: await serveImageStandIn(nc, node),
    async restartImages() {
      env.images = await serveImageStandIn(nc, node);
    },
    tasks: await serveTaskStandIn(nc, node),
    async restartTasks() {
      env.tasks = await serveTaskStandIn(nc, node);
    },
    replica,
    async stop() {
      for (const c of conns) {
        await c.served.stop(500);
        await c.svc.close();
        await c.nc.close();
        c.redis.disconnect();
      }
      await env.images.stop();
      await env.tasks.stop();
      await nc.close();
      redis.disconnect();
      await Promise.all([nats.stop(), redisServer.stop()]);
      await rm(stateRoot, { recursive: true, force: true });
    },
  };
  return env;
}
