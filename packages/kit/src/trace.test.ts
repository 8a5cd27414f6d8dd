import { defineService, op, Scope, Service } from '@berth/api';
import { startNats, startRedis } from '@berth/testing';
import { SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { call } from './client.js';
import { type EventEnvelope, publishEvent, subscribeEvents } from './events.js';
import { createLogger } from './logger.js';
import { connectNats } from './nats.js';
import { type ServedService, serve } from './service.js';
import { startTelemetry } from './telemetry.js';
import { type ChildService, randomNode, startTestService } from './testdata/child.js';
import { TestApi } from './testdata/test-api.mjs';

// A host-local service with one operation, served in this process.
const StatApi = defineService({
  name: Service.snapshot,
  scope: Scope.host,
  ops: {
    stat: op({
      input: z.object({ key: z.string() }),
      output: z.object({ key: z.string() }),
      timeoutMs: 5_000,
      description: 'the key back, or an error for "missing"',
    }),
  },
});

// Trace context crossing the NATS wire: the callee's span belongs to the caller's trace and is a
// child of the caller's client span.

const exporter = new InMemorySpanExporter();
const telemetry = startTelemetry({
  service: 'kit-test',
  version: '0.0.0',
  node: 'test',
  extraProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = trace.getTracer('kit-test');

let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
let nc: NatsConnection;

beforeAll(async () => {
  [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
  nc = await connectNats({ url: nats.url, name: 'kit-trace-test' });
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([nats?.stop(), redis?.stop()]);
  await telemetry.shutdown();
});

beforeEach(() => exporter.reset());

function clientSpan(name: string): ReadableSpan {
  const spans = exporter.getFinishedSpans().filter((s) => s.name === name && s.kind === SpanKind.CLIENT);
  expect(spans).toHaveLength(1);
  return spans[0]!;
}

describe('trace context over NATS', () => {
  let child: ChildService;
  beforeAll(async () => {
    child = await startTestService({ natsUrl: nats.url, redisUrl: redis.url });
  });
  afterAll(async () => {
    await child?.stop();
  });

  it('reaches a callee in another process as the parent of its span', async () => {
    const { root, reply } = await tracer.startActiveSpan('test-root', async (root) => {
      const reply = await call(nc, TestApi, 'trace', {}, { timeoutMs: 5000 });
      root.end();
      return { root, reply };
    });
    const traceId = root.spanContext().traceId;
    const client = clientSpan('task-service/trace');
    expect(client.spanContext().traceId).toBe(traceId);
    expect(client.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    // The callee saw W3C traceparent "00-<trace>-<client span>-01" and its own active span is in
    // the same trace, distinct from the client span.
    expect(reply.traceparent).toBe(`00-${traceId}-${client.spanContext().spanId}-01`);
    expect(reply.traceId).toBe(traceId);
    expect(reply.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(reply.spanId).not.toBe(client.spanContext().spanId);
  });

  it('starts a new trace per call when the caller has none', async () => {
    const one = await call(nc, TestApi, 'trace', {}, { timeoutMs: 5000 });
    const two = await call(nc, TestApi, 'trace', {}, { timeoutMs: 5000 });
    expect(one.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(one.traceId).not.toBe(two.traceId);
  });
});

describe('server spans', () => {
  let served: ServedService;
  const node = randomNode();
  beforeAll(async () => {
    served = await serve({
      nc,
      service: StatApi,
      version: '0.0.0',
      node,
      log: createLogger({ service: 'snapshot-service', node, level: 'silent' }),
      handlers: {
        stat: async ({ key }) => {
          if (key === 'missing') throw new Error(`snapshot "${key}" vanished`);
          return { key };
        },
      },
    });
  });
  afterAll(async () => {
    await served?.stop(1000);
  });

  it('records the callee span as a child of the client span, with the error code on failure', async () => {
    await call(nc, StatApi, 'stat', { key: 'a' }, { node, timeoutMs: 5000 });
    await expect(call(nc, StatApi, 'stat', { key: 'missing' }, { node, timeoutMs: 5000 })).rejects.toThrow(
      'vanished',
    );
    const spans = exporter.getFinishedSpans();
    const clients = spans.filter((s) => s.kind === SpanKind.CLIENT && s.name === 'snapshot-service/stat');
    const servers = spans.filter((s) => s.kind === SpanKind.SERVER && s.name === 'snapshot-service/stat');
    expect(clients).toHaveLength(2);
    expect(servers).toHaveLength(2);
    for (const [i, c] of clients.entries()) {
      const s = servers[i]!;
      expect(s.spanContext().traceId).toBe(c.spanContext().traceId);
      expect(s.parentSpanContext?.spanId).toBe(c.spanContext().spanId);
    }
    expect(servers[1]?.attributes['berth.error_code']).toBe('INTERNAL');
  });
});

describe('events', () => {
  it('deliver the envelope to pattern subscribers with the publisher trace, dropping malformed ones', async () => {
    const got: { env: EventEnvelope; traceId: string | undefined }[] = [];
    const arrived = new Promise<void>((resolve) => {
      const sub = subscribeEvents(nc, 'tasks.*', (env, ctx) => {
        got.push({ env, traceId: trace.getSpanContext(ctx)?.traceId });
        if (got.length === 2) {
          sub.unsubscribe();
          resolve();
        }
      });
    });
    await nc.flush();
    // Garbage from a misbehaving process must not stop the subscriber.
    nc.publish('berth.events.tasks.exit', new TextEncoder().encode('{oops'));
    const traceId = tracer.startActiveSpan('publisher', (span) => {
      publishEvent(nc, 'tasks.exit', 'k8s.io', { id: 'c1', exitStatus: 3 });
      span.end();
      return span.spanContext().traceId;
    });
    publishEvent(nc, 'images.create', 'default', { name: 'ignored: other topic' });
    publishEvent(nc, 'tasks.start', 'default', { id: 'c2' });
    await arrived;
    expect(got.map((g) => g.env.topic)).toEqual(['tasks.exit', 'tasks.start']);
    expect(got[0]?.env).toMatchObject({ namespace: 'k8s.io', event: { id: 'c1', exitStatus: 3 } });
    expect(new Date(got[0]?.env.timestamp ?? '').toISOString()).toBe(got[0]?.env.timestamp);
    expect(got[0]?.traceId).toBe(traceId);
  });
});
