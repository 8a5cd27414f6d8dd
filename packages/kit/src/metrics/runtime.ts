import { monitorEventLoopDelay } from 'node:perf_hooks';
import { metrics } from '@opentelemetry/api';
import type { NatsConnection } from 'nats';
import type { Redis } from '../redis.js';
import { onSendCommand } from '../redis-send-hook.js';
import { LATENCY_BUCKETS_S } from './requests.js';

/** Sampling period of the event-loop delay monitor: coarse, so an idle service stays idle. */
const LOOP_RESOLUTION_MS = 100;
/** The event-loop lag reported is the worst of the last window this long. */
const LOOP_WINDOW_MS = 10_000;

// The process's own figures; a connection's are recorded under its service's meter
// (`berth.<service>`), so a co-hosted process labels them with the service they belong to.
const meter = (service?: string) => metrics.getMeter(service ? `berth.${service}` : 'berth.runtime');

/**
 * Records the process's own figures: CPU seconds, resident and heap memory, and event-loop lag
 * (p99 and max over the last 10 s). Returns a function that stops the event-loop monitor.
 */
export function instrumentProcess(): () => void {
  const m = meter();
  const cpu = m.createObservableCounter('process.cpu', {
    description: 'CPU time used by the process (user + system)',
    unit: 's',
  });
  const rss = m.createObservableGauge('process.resident_memory', {
    description: 'Resident set size of the process',
    unit: 'By',
  });
  const heap = m.createObservableGauge('nodejs.heap.used', { description: 'V8 heap in use', unit: 'By' });
  const lag = m.createObservableGauge('nodejs.eventloop.lag', {
    description: 'Event-loop delay over the last 10 s, by quantile (0.99, 1 = the maximum)',
    unit: 's',
  });
  const loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loop.enable();
  let window = { p99: 0, max: 0 };
  const roll = setInterval(() => {
    // The histogram includes the sampling period itself: subtract it to leave only the lag.
    const base = LOOP_RESOLUTION_MS * 1e6;
    window = {
      p99: Math.max(0, loop.percentile(99) - base) / 1e9,
      max: Math.max(0, loop.max - base) / 1e9,
    };
    loop.reset();
  }, LOOP_WINDOW_MS);
  roll.unref();
  m.addBatchObservableCallback(
    (r) => {
      const u = process.cpuUsage();
      r.observe(cpu, (u.user + u.system) / 1e6);
      r.observe(rss, process.memoryUsage.rss());
      r.observe(heap, process.memoryUsage().heapUsed);
      r.observe(lag, window.p99, { quantile: '0.99' });
      r.observe(lag, window.max, { quantile: '1' });
    },
    [cpu, rss, heap, lag],
  );
  return () => {
    clearInterval(roll);
    loop.disable();
  };
}

/** Counts the reconnections of a service's NATS connection (`berth_nats_reconnects_total`). */
export function instrumentNats(nc: NatsConnection, service?: string): void {
  const reconnects = meter(service).createCounter('berth.nats.reconnects', {
    description: 'Times the NATS connection was re-established',
    unit: '{reconnect}',
  });
  reconnects.add(0);
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'reconnect') reconnects.add(1);
  })().catch(() => undefined);
}

/**
 * Times every command a service's Redis client sends, from send to reply, by command name
 * (`berth_redis_command_duration_seconds`); a failed command counts with `outcome="error"`.
 */
export function instrumentRedis(redis: Redis, service?: string): void {
  const duration = meter(service).createHistogram('berth.redis.command.duration', {
    description: 'Time from sending a Redis command to its reply',
    unit: 's',
    advice: { explicitBucketBoundaries: [0.0001, 0.00025, 0.0005, ...LATENCY_BUCKETS_S.slice(0, 10)] },
  });
  // Every send is timed, a resend after a reconnect included.
  onSendCommand(redis, ({ command }, next) => {
    const start = performance.now();
    const out = next();
    const done = (outcome: string) =>
      duration.record((performance.now() - start) / 1000, { command: command.name ?? 'unknown', outcome });
    command.promise?.then(
      () => done('ok'),
      () => done('error'),
    );
    return out;
  });
}
