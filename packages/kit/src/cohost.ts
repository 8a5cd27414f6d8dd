import type { ServiceDef } from '@berth/api';
import { toBerthError } from '@berth/api/errors';
import {
  type Config,
  DEFAULT_METRICS_ADDRESS,
  DEFAULT_NATS_URL,
  DEFAULT_REDIS_URL,
  loadConfig,
  ownUrl,
} from './config.js';
import { hostLayout } from './layout.js';
import { enableLocalRoutes } from './local-route.js';
import { createLogger, type Logger } from './logger.js';
import { type ServiceMetrics, startServiceMetrics } from './metrics/targets.js';
import { type ServiceEntry, type StartedService, type StartOptions, startService } from './run.js';
import { startTelemetry } from './telemetry.js';
import { ServiceAttribution } from './tracing/service-attribution.js';
import { traceStoreDir } from './tracing/store-dir.js';

/** One service a co-hosted process runs: its name and how to start it (types kept per service). */
export interface CohostedService {
  readonly name: string;
  start(opts: StartOptions): Promise<StartedService>;
}

/** Wraps one service's entry for runCohosted, keeping its handler types checked against its contract. */
export function cohost<S extends ServiceDef>(entry: ServiceEntry<S>): CohostedService {
  return { name: entry.service.name, start: (opts) => startService(entry, opts) };
}

/** Per-service settings a co-hosting process decides. */
export interface CohostedOptions {
  /** Resource name of the process's spans (each service still has its own tracer name). */
  processName: string;
  version: string;
  /** The services in start order; they stop in the reverse order (callers before callees). */
  services: readonly CohostedService[];
  /** A service's own NATS and Redis URLs, when the host knows them (one login per principal). */
  urls?: (service: string) => { natsUrl?: string; redisUrl?: string } | undefined;
  /** A service's own log file; stdout when undefined. */
  logFile?: (service: string) => string | undefined;
}

/**
 * Runs several services in one process, each as its own instance: its own logger (service name
 * on every line, its own file), tracer name (`berth.<service>`), NATS connection and Redis
 * connection under its own login, and graceful shutdown. The subjects and queue groups are the
 * ones each service uses alone, so other nodes and replicas cannot tell. The process has one
 * Prometheus endpoint (metricsAddress), advertised by every service it runs, where each
 * service's series carry its own `service` label and the process's figures (CPU, memory,
 * event loop) the process name; its spans go to the span store as a service's do, each naming
 * its service in `berth.service`.
 * SIGTERM/SIGINT stop the services in reverse start order, each with the full grace period. If
 * one fails to start, the ones started are stopped and the process exits 1, so the supervisor
 * restarts it whole.
 */
export async function runCohosted(opts: CohostedOptions): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    process.stderr.write(`${opts.processName}: ${toBerthError(err).message}\n`);
    process.exit(2);
  }
  // The services of this process answer each other without a NATS round trip (local-route.ts).
  enableLocalRoutes();
  const telemetry = startTelemetry({
    service: opts.processName,
    version: opts.version,
    node: config.nodeId,
    storeDir: traceStoreDir(config),
    extraProcessors: [new ServiceAttribution(new Set(opts.services.map((s) => s.name)))],
  });
  const level = config.logLevel;
  const logs = new Map<string, Logger>();
  for (const s of opts.services) {
    const file = opts.logFile?.(s.name);
    logs.set(
      s.name,
      createLogger({ service: s.name, node: config.nodeId, level, ...(file ? { file } : {}) }),
    );
  }
  const own = createLogger({ service: opts.processName, node: config.nodeId, level });
  telemetry.useLogger(own);
  const started: StartedService[] = [];
  let metrics: ServiceMetrics | undefined;
  let stopping = false;
  // The start under way when a signal arrives: it is awaited, then stopped with the others.
  let starting: Promise<unknown> = Promise.resolve();
  const stopAll = async (why: string) => {
    stopping = true;
    await starting.catch(() => undefined);
    // Each service gets its grace in turn, as `berth down` gives each group of separate ones.
    const hardStop = setTimeout(
      () => process.exit(1),
      config.shutdownGraceMs * Math.max(1, started.length) + 5000,
    );
    hardStop.unref();
    own.info({ why }, 'shutting down');
    for (const s of started.slice().reverse()) {
      logs.get(s.name)?.info({ signal: why }, 'shutting down');
      await s.stop(config.shutdownGraceMs);
    }
    await metrics?.stop().catch(() => undefined);
    await telemetry.shutdown().catch(() => undefined);
  };
  const onSignal = (signal: string) => {
    if (stopping) return;
    void stopAll(signal).then(() => process.exit(0));
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    // Before the services start, so the instruments they make in their setup record.
    metrics = await startServiceMetrics({
      service: opts.processName,
      version: opts.version,
      node: config.nodeId,
      address: config.metricsAddress ?? DEFAULT_METRICS_ADDRESS,
      targetsDir: hostLayout(config).run.metricsTargets,
      log: own,
      cohosted: opts.services.map((s) => s.name),
    });
  } catch (err) {
    own.fatal({ err }, 'start-up failed');
    process.stderr.write(`${opts.processName}: start-up failed: ${toBerthError(err).message}\n`);
    await telemetry.shutdown().catch(() => undefined);
    process.exit(1);
  }
  const metadata = metrics ? { metadata: { metrics: metrics.url } } : {};
  for (const s of opts.services) {
    if (stopping) return;
    const log = logs.get(s.name) as Logger;
    const urls = opts.urls?.(s.name);
    try {
      const one = s.start({
        config,
        log,
        natsUrl: urls?.natsUrl ?? ownUrl(config, s.name, 'natsUrl') ?? DEFAULT_NATS_URL,
        redisUrl: urls?.redisUrl ?? ownUrl(config, s.name, 'redisUrl') ?? DEFAULT_REDIS_URL,
        ...metadata,
      });
      starting = one.then((svc) => started.push(svc));
      await starting;
    } catch (err) {
      log.fatal({ err }, 'start-up failed');
      process.stderr.write(`${s.name}: start-up failed: ${toBerthError(err).message}\n`);
      if (stopping) return;
      await stopAll(`${s.name} failed to start`);
      process.exit(1);
    }
  }
  own.info({ services: started.map((s) => s.name) }, 'every co-hosted service is ready');
}
