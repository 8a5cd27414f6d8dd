import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startNats, startRedis, tempDir } from '@berth/testing';
import type { NatsConnection, ServiceInfo, ServiceStats } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../client.js';
import { connectNats } from '../nats.js';
import { type ChildService, startTestService } from '../testdata/child.js';
import { TestApi } from '../testdata/test-api.mjs';
import { catalogEntryOf, METRIC_CATALOG } from './catalog.js';
import { histogramQuantile, parsePrometheusText, type Sample } from './prometheus-parse.js';

// $SRV.STATS and the Prometheus endpoint of a real service process (the kit's test service run by
// runService) against a real nats-server and redis-server.

let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;
let svc: ChildService;
let runRoot: string;
let metricsUrl: string;

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'metrics-test' });
  runRoot = await tempDir('metrics-run');
  svc = await startTestService({ natsUrl: nats.url, redisUrl: redis.url, env: { BERTH_RUN_ROOT: runRoot } });
  const infos: ServiceInfo[] = [];
  for await (const i of await nc.services.client().info('task-service')) infos.push(i);
  const mine = infos.find((i) => i.metadata?.pid === String(svc.proc.pid));
  metricsUrl = mine?.metadata?.metrics ?? '';
});

afterAll(async () => {
  await svc?.stop();
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
  if (runRoot) await rm(runRoot, { recursive: true, force: true });
});

async function statsOf(op: string) {
  for await (const s of await nc.services.client().stats('task-service')) {
    if ((s as ServiceStats).metadata?.pid !== String(svc.proc.pid)) continue;
    const e = s.endpoints?.find((x) => x.name === op);
    if (e) return e;
  }
  throw new Error(`no $SRV.STATS for ${op}`);
}

async function scrape(): Promise<Sample[]> {
  const res = await fetch(metricsUrl);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await res.text());
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hit = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  return hit.length ? hit.reduce((a, s) => a + s.value, 0) : undefined;
}

/** Holds one `hold` request for `ms` while other requests are answered; returns when it is answered. */
async function holdFor(ms: number, id: string, during: () => Promise<void>): Promise<void> {
  const from = svc.mark();
  const held = call(nc, TestApi, 'hold', { id }, { timeoutMs: 10_000 });
  await svc.waitForLog((l) => l.holdId === id, { from });
  await during();
  // A duration the test chooses for the handler, not a wait for something to happen.
  await delay(ms);
  nc.publish(`test.release.${id}`);
  await held;
}

describe('$SRV.STATS', () => {
  it('counts errors and times handlers from arrival to answer, with requests still concurrent', async () => {
    for (let i = 0; i < 3; i++) {
      await call(nc, TestApi, 'fail', { code: 'NOT_FOUND', message: `image "x${i}" not found` }).catch(
        () => undefined,
      );
    }
    await call(nc, TestApi, 'crash', { message: 'disk on fire' }).catch(() => undefined);
    await holdFor(150, 'stats-1', async () => {
      // Answered while `hold` is in flight: the kit still handles requests concurrently.
      for (let i = 0; i < 5; i++) await call(nc, TestApi, 'echo', { text: String(i) });
      expect((await statsOf('hold')).data).toEqual({ in_flight: 1 });
    });

    const fail = await statsOf('fail');
    expect(fail.num_requests).toBe(3);
    expect(fail.num_errors).toBe(3);
    expect(fail.last_error).toBe('NOT_FOUND: image "x2" not found');
    expect((await statsOf('crash')).num_errors).toBe(1);
    const echo = await statsOf('echo');
    expect(echo).toMatchObject({ num_requests: 5, num_errors: 0 });
    const hold = await statsOf('hold');
    expect(hold.num_requests).toBe(1);
    expect(hold.num_errors).toBe(0);
    // Nanoseconds, as the Service API reports them: at least the 150 ms the handler was held.
    expect(hold.processing_time).toBeGreaterThanOrEqual(150e6);
    expect(hold.average_processing_time).toBe(hold.processing_time);
    expect(echo.average_processing_time).toBeLessThan(hold.average_processing_time);
    expect(hold.data).toEqual({ in_flight: 0 });
  });
});

describe('Prometheus endpoint', () => {
  it('is advertised in $SRV metadata on loopback, and written as a file_sd target', () => {
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const dir = join(runRoot, 'metrics');
    const files = readdirSync(dir);
    expect(files).toContain(`task-service-${svc.proc.pid}.json`);
    const [target] = JSON.parse(readFileSync(join(dir, `task-service-${svc.proc.pid}.json`), 'utf8'));
    expect(target.targets).toEqual([new URL(metricsUrl).host]);
    expect(target.labels).toMatchObject({ service: 'task-service', pid: String(svc.proc.pid) });
  });

  it('moves the request counters, errors by outcome, latency and in-flight', async () => {
    const before = await scrape();
    const okBefore = value(before, 'berth_requests_total', { op: 'echo', outcome: 'ok' }) ?? 0;
    const nfBefore = value(before, 'berth_requests_total', { op: 'fail', outcome: 'not_found' }) ?? 0;
    await call(nc, TestApi, 'echo', { text: 'a' });
    await call(nc, TestApi, 'fail', { code: 'NOT_FOUND', message: 'gone' }).catch(() => undefined);
    await call(nc, TestApi, 'fail', { code: 'UNAVAILABLE', message: 'later' }).catch(() => undefined);
    await holdFor(120, 'metrics-1', async () => {
      const during = await scrape();
      expect(value(during, 'berth_requests_in_flight', { op: 'hold' })).toBe(1);
    });
    const after = await scrape();
    expect(value(after, 'berth_requests_total', { op: 'echo', outcome: 'ok' })).toBe(okBefore + 1);
    expect(value(after, 'berth_requests_total', { op: 'fail', outcome: 'not_found' })).toBe(nfBefore + 1);
    expect(
      value(after, 'berth_requests_total', { op: 'fail', outcome: 'unavailable' }),
    ).toBeGreaterThanOrEqual(1);
    expect(value(after, 'berth_requests_in_flight', { op: 'hold' })).toBe(0);
    expect(after.every((s) => s.labels.service === 'task-service')).toBe(true);

    // The held request's latency lands in the histogram's buckets above 0.1 s.
    const holdCount =
      value(after, 'berth_request_duration_seconds_count', { op: 'hold', outcome: 'ok' }) ?? 0;
    const holdBuckets = after
      .filter((s) => s.name === 'berth_request_duration_seconds_bucket' && s.labels.op === 'hold')
      .map((s) => ({
        le: Number(s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : s.labels.le),
        count: s.value,
      }));
    expect(holdCount).toBeGreaterThanOrEqual(1);
    expect(value(after, 'berth_request_duration_seconds_bucket', { op: 'hold', le: '0.1' })).toBe(0);
    expect(histogramQuantile(0.5, holdBuckets)).toBeGreaterThan(0.1);
    expect(value(after, 'berth_request_duration_seconds_sum', { op: 'hold' })).toBeGreaterThanOrEqual(
      0.12 * holdCount,
    );
  });

  it('reports the process, NATS reconnects and Redis latency', async () => {
    await call(nc, TestApi, 'info', {}); // pings Redis
    const s = await scrape();
    expect(value(s, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(value(s, 'process_resident_memory_bytes')).toBeGreaterThan(10e6);
    expect(value(s, 'nodejs_heap_used_bytes')).toBeGreaterThan(1e6);
    expect(value(s, 'nodejs_eventloop_lag_seconds', { quantile: '0.99' })).toBeGreaterThanOrEqual(0);
    expect(value(s, 'berth_nats_reconnects_total')).toBe(0);
    expect(
      value(s, 'berth_redis_command_duration_seconds_count', { command: 'ping', outcome: 'ok' }),
    ).toBeGreaterThan(0);
  });

  it("exports exactly the catalog's metrics for every service, and names them the same", async () => {
    const names = new Set((await scrape()).map((s) => s.name));
    for (const n of names) expect(catalogEntryOf(n), `${n} is not in METRIC_CATALOG`).toBeDefined();
    const families = new Set([...names].map((n) => catalogEntryOf(n)?.name));
    for (const e of METRIC_CATALOG.filter((x) => x.services === 'all')) expect(families).toContain(e.name);
  });

  it('counts a NATS reconnect when the server restarts', async () => {
    expect(value(await scrape(), 'berth_nats_reconnects_total')).toBe(0);
    const weReconnected = (async () => {
      for await (const st of nc.status()) if (st.type === 'reconnect') return;
    })();
    await nats.restart();
    // Polls the real condition (bounded): the client reconnects with jittered backoff.
    const deadline = Date.now() + 20_000;
    let reconnects = 0;
    while (Date.now() < deadline) {
      reconnects = value(await scrape(), 'berth_nats_reconnects_total') ?? 0;
      if (reconnects > 0) break;
      await delay(50);
    }
    expect(reconnects).toBe(1);
    // And the service answers again once this side has its connection back too.
    await weReconnected;
    await expect(call(nc, TestApi, 'echo', { text: 'back' })).resolves.toMatchObject({ text: 'back' });
  });

  it('removes its target file when the service stops', async () => {
    const file = join(runRoot, 'metrics', `task-service-${svc.proc.pid}.json`);
    expect(existsSync(file)).toBe(true);
    await svc.stop();
    expect(existsSync(file)).toBe(false);
  });
});
