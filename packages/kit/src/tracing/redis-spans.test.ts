import { startRedis } from '@berth/testing';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openRedis, type Redis } from '../redis.js';
import { startTelemetry } from '../telemetry.js';
import { redisScript, traceRedis } from './redis-spans.js';

// db spans of a real redis-server's scripts, transactions and pipelines: children of the span
// that asked, named after the script or commands, with keys but never the values sent.

const exporter = new InMemorySpanExporter();
const telemetry = startTelemetry({
  service: 'kit-redis-test',
  version: '0.0.0',
  node: 'test',
  extraProcessors: [new SimpleSpanProcessor(exporter)],
});
const tracer = trace.getTracer('kit-redis-test');

const SWAP = redisScript(
  'test swap',
  `local old = redis.call('get', KEYS[1]) redis.call('set', KEYS[1], ARGV[1]) return old`,
);
const SECRET = 'hunter2-do-not-log';

let server: Awaited<ReturnType<typeof startRedis>>;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis({ appendonly: false });
  redis = await openRedis(server.url);
  traceRedis(redis);
});

afterAll(async () => {
  await redis?.quit();
  await server?.stop();
  await telemetry.shutdown();
});

beforeEach(() => exporter.reset());

/** Runs `fn` under a parent span and returns the db spans made under it, once they all ended. */
async function under(fn: () => Promise<unknown>): Promise<{ parent: ReadableSpan; db: ReadableSpan[] }> {
  await tracer.startActiveSpan('op', async (span) => {
    await fn().catch(() => undefined);
    span.end();
  });
  // A db span ends when its replies settle, a tick after the caller's await resumes.
  await new Promise((r) => setImmediate(r));
  const spans = exporter.getFinishedSpans();
  const parent = spans.find((s) => s.name === 'op') as ReadableSpan;
  return { parent, db: spans.filter((s) => s.attributes['db.system'] === 'redis') };
}

describe('traceRedis', () => {
  it('makes a db span per EVAL, named after the script, under the caller', async () => {
    const { parent, db } = await under(() => redis.eval(SWAP, 1, 'berth:test:swap', SECRET));
    expect(db).toHaveLength(1);
    const s = db[0] as ReadableSpan;
    expect(s.name).toBe('EVAL test swap');
    expect(s.kind).toBe(SpanKind.CLIENT);
    expect(s.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(s.spanContext().traceId).toBe(parent.spanContext().traceId);
    expect(s.status.code).toBe(SpanStatusCode.OK);
    expect(s.attributes).toMatchObject({
      'db.system': 'redis',
      'db.system.name': 'redis',
      'db.operation.name': 'EVAL',
      'db.stored_procedure.name': 'test swap',
      'db.query.text': 'EVAL ? 1 berth:test:swap ?',
      'db.namespace': '0',
      'server.address': '127.0.0.1',
    });
    expect(JSON.stringify(s.attributes)).not.toContain(SECRET);
  });

  it('names an unregistered script by its sha1 and marks a failed script ERROR', async () => {
    const { db } = await under(() => redis.eval(`return redis.error_reply('nope')`, 0));
    expect(db).toHaveLength(1);
    expect(db[0]?.name).toMatch(/^EVAL sha1:[0-9a-f]{12}$/);
    expect(db[0]?.status.code).toBe(SpanStatusCode.ERROR);
    expect(db[0]?.events.map((e) => e.name)).toContain('exception');
  });

  it('makes one span per MULTI/EXEC transaction and per pipeline, with keys and no values', async () => {
    const tx = await under(() =>
      redis.multi().hset('berth:test:h', 'password', SECRET).del('berth:test:other').exec(),
    );
    expect(tx.db).toHaveLength(1);
    expect(tx.db[0]).toMatchObject({
      name: 'MULTI HSET DEL',
      attributes: {
        'db.operation.name': 'MULTI',
        'db.operation.batch.size': 2,
        'db.query.text': 'MULTI; HSET berth:test:h ? ?; DEL berth:test:other; EXEC',
      },
    });
    expect(tx.db[0]?.parentSpanContext?.spanId).toBe(tx.parent.spanContext().spanId);
    expect(JSON.stringify(tx.db[0]?.attributes)).not.toContain(SECRET);
    expect(await redis.hget('berth:test:h', 'password')).toBe(SECRET);

    exporter.reset();
    const batch = await under(() => redis.pipeline().hgetall('berth:test:h').hgetall('berth:test:x').exec());
    expect(batch.db.map((s) => [s.name, s.attributes['db.operation.batch.size']])).toEqual([
      ['BATCH HGETALL', 2],
    ]);
  });

  it('makes no span for a single command, nor for work outside a traced operation', async () => {
    const single = await under(() => redis.get('berth:test:swap'));
    expect(single.db).toEqual([]);
    exporter.reset();
    await redis.eval(SWAP, 1, 'berth:test:swap', 'x');
    await redis.multi().del('berth:test:h').exec();
    await new Promise((r) => setImmediate(r));
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
