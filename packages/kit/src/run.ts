import { busRoles, type Principal, type ServiceDef, toBerthError } from '@berth/api';
import type { NatsConnection } from 'nats';
import type { Logger } from 'pino';
import {
  type Config,
  DEFAULT_METRICS_ADDRESS,
  DEFAULT_NATS_URL,
  DEFAULT_REDIS_URL,
  loadConfig,
  ownTls,
  ownUrl,
} from './config.js';
import { type HostLayout, hostLayout } from './layout.js';
import { allowList, setLocalCaller } from './local-route.js';
import { createLogger } from './logger.js';
import { instrumentNats, instrumentRedis } from './metrics/runtime.js';
import { type ServiceMetrics, startServiceMetrics } from './metrics/targets.js';
import { connectNats } from './nats.js';
import { natsPermissions } from './permissions.js';
import { redactUrl } from './redact.js';
import { openRedis, type Redis } from './redis.js';
import { type Handlers, serve } from './service.js';
import { startTelemetry } from './telemetry.js';
import { traceRedis } from './tracing/redis-spans.js';
import { traceStoreDir } from './tracing/store-dir.js';

/** What a service's setup receives: everything already connected. */
export interface ServiceContext {
  config: Config;
  log: Logger;
  nc: NatsConnection;
  redis: Redis;
  node: string;
  layout: HostLayout;
}

/** What a service's setup returns: its handlers, extra health checks, and how to close its own resources. */
export interface ServiceSetup<S extends ServiceDef> {
  handlers: Handlers<S>;
  checks?: () => Promise<Record<string, string>>;
  /** Called after requests have stopped and before NATS drains. */
  close?: () => Promise<void>;
}

/**
 * One deployable service as both its own process (runService) and a co-hosted process
 * (runCohosted) start it: its contract, its version and its setup, i.e. the service's `start`.
 */
export interface ServiceEntry<S extends ServiceDef> {
  service: S;
  version: string;
  setup: (ctx: ServiceContext) => Promise<ServiceSetup<S>>;
}

/** Where and how one service instance runs: decided by the process that hosts it. */
export interface StartOptions {
  config: Config;
  log: Logger;
  /** The service's own login (its principal's NATS user), or the shared URL. */
  natsUrl: string;
  redisUrl: string;
  /** This replica's id (the telemetry resource's service.instance.id); default: a new UUID. */
  instanceId?: string;
  /** Extra `$SRV` metadata of this instance (e.g. where its process's metrics are scraped). */
  metadata?: Record<string, string>;
}

/** A started service instance: serving on its own NATS and Redis connections until stop(). */
export interface StartedService {
  readonly name: string;
  readonly instanceId: string;
  /**
   * Stops taking requests, lets in-flight ones finish (bounded by `graceMs`), closes the
   * service's own resources, drains its NATS connection and quits its Redis connection.
   */
  stop(graceMs: number): Promise<void>;
}

/** Bound on the Redis health check, so `info` answers promptly even while Redis is away. */
const REDIS_CHECK_MS = 1000;

/**
 * "ok" when Redis answers PING in time, else the problem. Commands queue while ioredis reconnects,
 * so a bare PING would hang `info` (and every caller's health probe) until Redis came back.
 */
async function redisHealth(redis: Redis): Promise<string> {
  if (redis.status !== 'ready') return `redis: not connected (${redis.status})`;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`redis: no answer to PING within ${REDIS_CHECK_MS} ms`), REDIS_CHECK_MS);
  });
  try {
    return await Promise.race([
      redis.ping().then(
        () => 'ok',
        (e: Error) => `redis: ${e.message}`,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Per node and principal name: the subjects its NATS user may publish there, built once. */
const permitsByNode = new Map<string, Map<string, (subject: string) => boolean>>();

/** The subjects principal `principal`'s NATS user may publish on `node` (undefined: no principal). */
function permitsOf(node: string, principal: string): ((subject: string) => boolean) | undefined {
  if (!Object.hasOwn(busRoles, principal)) return undefined;
  let made = permitsByNode.get(node);
  if (!made) {
    made = new Map();
    permitsByNode.set(node, made);
  }
  let allowed = made.get(principal);
  if (!allowed) {
    allowed = allowList(natsPermissions(principal as Principal, node).publish);
    made.set(principal, allowed);
  }
  return allowed;
}

/**
 * Connects one service's NATS and Redis, runs its setup and serves its operations. Each instance
 * has connections of its own: they log in as the service's principal (with its own TLS client
 * certificate when configured), so a co-hosted service keeps exactly the permissions it has in a
 * process of its own. On failure it closes what it opened and throws.
 */
export async function startService<S extends ServiceDef>(
  entry: ServiceEntry<S>,
  opts: StartOptions,
): Promise<StartedService> {
  const { config, log } = opts;
  const name = entry.service.name;
  const natsTls = ownTls(config, name, 'natsTls');
  const redisTls = ownTls(config, name, 'redisTls');
  const nc = await connectNats({
    url: opts.natsUrl,
    name: `${name}@${config.nodeId}`,
    log,
    ...(config.natsCreds ? { creds: config.natsCreds } : {}),
    ...(natsTls ? { tls: natsTls } : {}),
  });
  // What this instance may call past NATS is what its NATS user may publish (local-route.ts).
  const sockets = config.sameNodeCalls !== 'nats';
  const routesDir = hostLayout(config).run.routes;
  const own = permitsOf(config.nodeId, name);
  if (own) {
    setLocalCaller(nc, own, sockets ? { dir: routesDir, principal: name, node: config.nodeId } : undefined);
  }
  let redis: Redis | undefined;
  try {
    const r = await openRedis(opts.redisUrl, log, {
      ...(redisTls ? { tls: redisTls } : {}),
      ...(config.redisSentinel ? { sentinel: config.redisSentinel } : {}),
    });
    redis = r;
    instrumentNats(nc, name);
    instrumentRedis(r, name);
    traceRedis(r);
    const ctx: ServiceContext = {
      config,
      log,
      nc,
      redis: r,
      node: config.nodeId,
      layout: hostLayout(config),
    };
    const def = await entry.setup(ctx);
    const served = await serve({
      nc,
      service: entry.service,
      version: entry.version,
      node: config.nodeId,
      log,
      ...(opts.instanceId ? { instanceId: opts.instanceId } : {}),
      handlers: def.handlers,
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(sockets
        ? { routes: { dir: routesDir, permit: (principal) => permitsOf(config.nodeId, principal) } }
        : {}),
      checks: async () => {
        const redisOk = await redisHealth(r);
        return { redis: redisOk, ...(def.checks ? await def.checks() : {}) };
      },
    });
    log.info(
      {
        nats: redactUrl(opts.natsUrl),
        redis: redactUrl(opts.redisUrl),
        hostLocal: entry.service.scope === 'host',
        instance: served.instanceId,
        metrics: opts.metadata?.metrics ?? 'off',
      },
      `${name} ready`,
    );
    return {
      name,
      instanceId: served.instanceId,
      stop: async (graceMs) => {
        await served.stop(graceMs);
        await def.close?.().catch((err: unknown) => log.error({ err }, 'close failed'));
        await nc.drain().catch(() => undefined);
        await r.quit().catch(() => undefined);
        log.info('stopped');
      },
    };
  } catch (err) {
    // A co-hosted process goes on (or exits) after this: leave no connection behind.
    await nc.close().catch(() => undefined);
    redis?.disconnect();
    throw err;
  }
}

/**
 * The whole life of a service process: telemetry first, config, metrics, connect NATS and Redis,
 * serve, and on SIGTERM/SIGINT stop taking requests, finish in-flight ones (bounded), close, drain
 * NATS, quit Redis, flush spans. Exits non-zero with one clear line if start-up fails.
 */
export async function runService<S extends ServiceDef>(entry: ServiceEntry<S>): Promise<void> {
  const name = entry.service.name;
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${name}: ${toBerthError(err).message}\n`);
    process.exit(2);
  }
  const telemetry = startTelemetry({
    service: name,
    version: entry.version,
    node: config.nodeId,
    storeDir: traceStoreDir(config),
  });
  const log = createLogger({ service: name, node: config.nodeId, level: config.logLevel });
  telemetry.useLogger(log);
  let metrics: ServiceMetrics | undefined;
  try {
    // Before setup, so the instruments services make there record.
    metrics = await startServiceMetrics({
      service: name,
      version: entry.version,
      node: config.nodeId,
      address: config.metricsAddress ?? DEFAULT_METRICS_ADDRESS,
      targetsDir: hostLayout(config).run.metricsTargets,
      log,
    });
    const started = await startService(entry, {
      config,
      log,
      natsUrl: ownUrl(config, name, 'natsUrl') ?? DEFAULT_NATS_URL,
      redisUrl: ownUrl(config, name, 'redisUrl') ?? DEFAULT_REDIS_URL,
      instanceId: telemetry.instance,
      ...(metrics ? { metadata: { metrics: metrics.url } } : {}),
    });
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      const hardStop = setTimeout(() => process.exit(1), config.shutdownGraceMs + 5000);
      hardStop.unref();
      await started.stop(config.shutdownGraceMs);
      await metrics?.stop().catch(() => undefined);
      await telemetry.shutdown().catch(() => undefined);
      process.exit(0);
    };
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
    process.on('SIGINT', () => void shutdown('SIGINT'));
  } catch (err) {
    log.fatal({ err }, 'start-up failed');
    process.stderr.write(`${name}: start-up failed: ${toBerthError(err).message}\n`);
    await metrics?.stop().catch(() => undefined);
    await telemetry.shutdown().catch(() => undefined);
    process.exit(1);
  }
}
