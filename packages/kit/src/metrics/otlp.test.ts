import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { startNats, startRedis } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from '../client.js';
import { connectNats } from '../nats.js';
import { type ChildService, startTestService } from '../testdata/child.js';
import { TestApi } from '../testdata/test-api.mjs';

// With OTEL_EXPORTER_OTLP_ENDPOINT set, a service pushes its metrics over OTLP/HTTP (JSON) to
// <endpoint>/v1/metrics: here a real HTTP receiver in the test decodes what arrives.

interface OtlpMetric {
  name: string;
  unit?: string;
  sum?: {
    dataPoints: {
      attributes: { key: string; value: { stringValue?: string } }[];
      asInt?: string | number;
      asDouble?: number;
    }[];
  };
}
interface OtlpExport {
  resourceMetrics: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeMetrics: { metrics: OtlpMetric[] }[];
  }[];
}

let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;
let svc: ChildService;
let receiver: Server;
const received: OtlpExport[] = [];
const waiters = new Set<() => void>();

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'otlp-metrics-test' });
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/metrics') {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        received.push(JSON.parse(body.toString('utf8')) as OtlpExport);
        for (const w of waiters) w();
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
  const { port } = receiver.address() as AddressInfo;
  svc = await startTestService({
    natsUrl: nats.url,
    redisUrl: redis.url,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_METRIC_EXPORT_INTERVAL: '300' },
  });
});

afterAll(async () => {
  await svc?.stop();
  await nc?.close();
  await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
  await Promise.all([nats?.stop(), redis?.stop()]);
});

/** The value of the `berth.requests` data point for `op`/`outcome` in one export, if present. */
function requests(e: OtlpExport, op: string, outcome: string): number | undefined {
  for (const rm of e.resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        if (m.name !== 'berth.requests') continue;
        for (const dp of m.sum?.dataPoints ?? []) {
          const a = Object.fromEntries(dp.attributes.map((x) => [x.key, x.value.stringValue]));
          if (a.op === op && a.outcome === outcome) return Number(dp.asInt ?? dp.asDouble);
        }
      }
    }
  }
  return undefined;
}

/** Resolves with the first export (received from now on) for which `pred` holds; bounded. */
function nextExport(pred: (e: OtlpExport) => boolean, timeoutMs = 15_000): Promise<OtlpExport> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(
        new Error(`no matching OTLP metrics export within ${timeoutMs} ms (${received.length} received)`),
      );
    }, timeoutMs);
    const check = () => {
      const hit = received.find(pred);
      if (!hit) return;
      clearTimeout(timer);
      waiters.delete(check);
      resolve(hit);
    };
    waiters.add(check);
    check();
  });
}

describe('OTLP metrics export', () => {
  it('pushes the request counters, with the service resource, to <endpoint>/v1/metrics', async () => {
    await call(nc, TestApi, 'echo', { text: 'x' });
    await call(nc, TestApi, 'echo', { text: 'y' });
    await call(nc, TestApi, 'fail', { code: 'NOT_FOUND', message: 'gone' }).catch(() => undefined);
    const e = await nextExport(
      (x) => requests(x, 'echo', 'ok') === 2 && requests(x, 'fail', 'not_found') === 1,
    );
    const resource = Object.fromEntries(
      (e.resourceMetrics[0]?.resource.attributes ?? []).map((a) => [a.key, a.value.stringValue]),
    );
    expect(resource['service.name']).toBe('task-service');
    expect(resource['berth.node']).toBe(svc.nodeId);
    const names = new Set(
      e.resourceMetrics.flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.name))),
    );
    for (const n of [
      'berth.request.duration',
      'berth.requests.in_flight',
      'process.cpu',
      'nodejs.eventloop.lag',
    ]) {
      expect(names).toContain(n);
    }
  });
});
