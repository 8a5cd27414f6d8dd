import { type ServiceDef, toBerthError } from '@berth/api';
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
import { createLogger } from './logger.js';
import { instrumentNats, instrumentRedis } from './metrics/runtime.js';
import { type ServiceMetrics, startServiceMetrics } from './metrics/targets.js';
import { connectNats } from './nats.js';
import { redactUrl } from './redact.js';
import { openRedis, type Redis } from './redis.js';
import { type Handlers, serve } from './service.js';
import { startTelemetry } from './telemetry.js';
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

/**
 * The whole life of a service process: telemetry first, config, connect NATS and Redis, serve,
 * and on SIGTERM/SIGINT stop taking requests, finish in-flight ones (bounded), close, drain NATS,
 * quit Redis, flush spans. Exits non-zero with one clear line if start-up fails.
 */
export async function runService<S extends ServiceDef>(opts: {
  service: S;
  version: string;
  setup: (ctx: ServiceContext) => Promise<ServiceSetup<S>>;
}): Promise<void> {
  const name = opts.service.name;
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${name}: ${toBerthError(err).message}\n`);
    process.exit(2);
  }
  const telemetry = startTelemetry({
    service: name,
    version: opts.version,
    node: config.nodeId,
    storeDir: traceStoreDir(config),
  });
  const log = createLogger({ service: name, node: config.nodeId, level: config.logLevel });
  telemetry.useLogger(log);
  const natsUrl = ownUrl(config, name, 'natsUrl') ?? DEFAULT_NATS_URL;
  const redisUrl = ownUrl(config, name, 'redisUrl') ?? DEFAULT_REDIS_URL;
  let metrics: ServiceMetrics | undefined;
  try {
    // Before setup, so the instruments services make there record.
    metrics = await startServiceMetrics({
      service: name,
      version: opts.version,
      node: config.nodeId,
      address: config.metricsAddress ?? DEFAULT_METRICS_ADDRESS,
      targetsDir: hostLayout(config).run.metricsTargets,
      log,
    });
    const natsTls = ownTls(config, name, 'natsTls');
    const redisTls = ownTls(config, name, 'redisTls');
    const nc = await connectNats({
      url: natsUrl,
      name: `${name}@${config.nodeId}`,
      log,
      ...(config.natsCreds ? { creds: config.natsCreds } : {}),
      ...(natsTls ? { tls: natsTls } : {}),
    });
    const redis = await openRedis(redisUrl, log, {
      ...(redisTls ? { tls: redisTls } : {}),
      ...(config.redisSentinel ? { sentinel: config.redisSentinel } : {}),
    });
    instrumentNats(nc);
    instrumentRedis(redis);
    const ctx: ServiceContext = { config, log, nc, redis, node: config.nodeId, layout: hostLayout(config) };
    const def = await opts.setup(ctx);
    const served = await serve({
      nc,
      service: opts.service,
      version: opts.version,
      node: config.nodeId,
      log,
      instanceId: telemetry.instance,
      handlers: def.handlers,
      ...(metrics ? { metadata: { metrics: metrics.url } } : {}),
      checks: async () => {
        const redisOk = await redisHealth(redis);
        return { redis: redisOk, ...(def.checks ? await def.checks() : {}) };
      },
    });
    log.info(
      {
        nats: redactUrl(natsUrl),
        redis: redactUrl(redisUrl),
        hostLocal: opts.service.scope === 'host',
        instance: served.instanceId,
        metrics: metrics?.url ?? 'off',
      },
      `${name} ready`,
    );
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      const hardStop = setTimeout(() => process.exit(1), config.shutdownGraceMs + 5000);
      hardStop.unref();
      await served.stop(config.shutdownGraceMs);
      await def.close?.().catch((err: unknown) => log.error({ err }, 'close failed'));
      await nc.drain().catch(() => undefined);
      await redis.quit().catch(() => undefined);
      await metrics?.stop().catch(() => undefined);
      await telemetry.shutdown().catch(() => undefined);
      log.info('stopped');
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
