import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api/errors';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { headers as natsHeaders } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { injectTrace } from '../telemetry.js';
import { startCliTelemetry } from './cli-telemetry.js';
import { readSpans } from './span-store.js';
import { parseTraceparent } from './traceparent.js';

// The CLI's telemetry without the SDK: a root span per command, children through awaits, the
// traceparent on outgoing headers, and at exit the spans in the store and (bounded) at a collector.

interface Posted {
  resourceSpans: {
    resource: { attributes: { key: string; value: Record<string, unknown> }[] };
    scopeSpans: {
      spans: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        startTimeUnixNano: string;
        endTimeUnixNano: string;
        status: { code: number };
        attributes: { key: string; value: Record<string, unknown> }[];
        events: { name: string }[];
      }[];
    }[];
  }[];
}

let server: Server;
let endpoint: string;
const posted: Posted[] = [];
let silent = false;

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

beforeAll(async () => {
  server = createServer((req, res) => {
    if (silent) return; // never answers
    void body(req).then((b) => {
      expect(req.url).toBe('/v1/traces');
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers['x-tenant']).toBe('t1');
      posted.push(JSON.parse(b) as Posted);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('CLI telemetry', () => {
  it('records a root span with its children and exit code, carries traceparent, stores and exports', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-cli-spans-'));
    try {
      const env = {
        OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
        OTEL_EXPORTER_OTLP_HEADERS: 'x-tenant=t1',
        BERTH_OTLP_EXIT_MS: '5000',
      };
      const t = startCliTelemetry({ service: 'berth', version: '9.9.9', node: 'n1', storeDir: dir, env });
      let sent: string | undefined;
      const code = await t.run('berth ps', async () => {
        await new Promise((r) => setTimeout(r, 5));
        // As the kit's client does for every call: a CLIENT span whose context goes on the wire.
        const span = trace
          .getTracer('berth.client')
          .startSpan('task-service/list', { kind: SpanKind.CLIENT });
        const h = natsHeaders();
        injectTrace(h, trace.setSpan(context.active(), span));
        sent = h.get('traceparent');
        span.end();
        return 3;
      });
      expect(code).toBe(3);
      await t.finish();
      const traceId = t.traceId() ?? '';
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      const stored = await readSpans(dir);
      expect(stored.map((s) => s.name).sort()).toEqual(['berth ps', 'task-service/list']);
      const root = stored.find((s) => s.name === 'berth ps');
      const client = stored.find((s) => s.name === 'task-service/list');
      expect(root).toMatchObject({
        traceId,
        parentSpanId: '',
        status: { code: 2 },
        attributes: { 'process.exit.code': 3 },
      });
      expect(client).toMatchObject({ traceId, parentSpanId: root?.spanId, kind: SpanKind.CLIENT });
      expect(parseTraceparent(sent)).toMatchObject({ traceId, spanId: client?.spanId });
      // The same spans as OTLP/JSON: hex ids, OTLP kind numbers, nanosecond strings, the resource.
      const spans = posted.flatMap((p) =>
        p.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)),
      );
      const otlpClient = spans.find((s) => s.name === 'task-service/list');
      expect(otlpClient).toMatchObject({
        traceId,
        spanId: client?.spanId,
        parentSpanId: root?.spanId,
        kind: 3,
      });
      expect(BigInt(otlpClient?.endTimeUnixNano ?? '0')).toBeGreaterThanOrEqual(
        BigInt(otlpClient?.startTimeUnixNano ?? '1'),
      );
      const resource = Object.fromEntries(
        (posted[0]?.resourceSpans[0]?.resource.attributes ?? []).map((a) => [
          a.key,
          Object.values(a.value)[0],
        ]),
      );
      expect(resource).toMatchObject({
        'service.name': 'berth',
        'service.version': '9.9.9',
        'berth.node': 'n1',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps the spans of commands running at once in one process apart (the commands berth up serves)', async () => {
    const dirs = [
      await mkdtemp(join(tmpdir(), 'berth-cli-spans-a-')),
      await mkdtemp(join(tmpdir(), 'berth-cli-spans-b-')),
    ];
    try {
      const [a, b] = dirs.map((storeDir) =>
        startCliTelemetry({ service: 'berth', version: '9.9.9', node: 'n1', storeDir, env: {} }),
      ) as [ReturnType<typeof startCliTelemetry>, ReturnType<typeof startCliTelemetry>];
      /** A command whose child span starts after the other command started. */
      const command = (name: string, turn: Promise<unknown>) => async () => {
        await turn;
        trace.getTracer('berth.client').startSpan(`${name}/call`, { kind: SpanKind.CLIENT }).end();
        return 0;
      };
      let go: () => void = () => undefined;
      const started = new Promise<void>((r) => {
        go = r;
      });
      const first = a.run('berth run', command('run', started));
      const second = b.run('berth ps', command('ps', Promise.resolve()));
      await second;
      go();
      await first;
      await Promise.all([a.finish(), b.finish()]);
      const [spansA, spansB] = await Promise.all(dirs.map((d) => readSpans(d)));
      expect(spansA?.map((s) => s.name).sort()).toEqual(['berth run', 'run/call']);
      expect(spansB?.map((s) => s.name).sort()).toEqual(['berth ps', 'ps/call']);
      expect(new Set(spansA?.map((s) => s.traceId))).toEqual(new Set([a.traceId()]));
    } finally {
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    }
  });

  it('a failing command records the error code and the exception; a silent collector costs only the bound', async () => {
    silent = true;
    const dir = await mkdtemp(join(tmpdir(), 'berth-cli-spans-'));
    try {
      const env = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, BERTH_OTLP_EXIT_MS: '50' };
      const t = startCliTelemetry({ service: 'berth', version: '1', node: 'n1', storeDir: dir, env });
      await expect(
        t.run('berth rm', async () => {
          throw new BerthError(Code.NOT_FOUND, 'container "x" not found');
        }),
      ).rejects.toThrow('not found');
      const t0 = performance.now();
      await t.finish();
      expect(performance.now() - t0).toBeLessThan(1000);
      const [root] = await readSpans(dir);
      expect(root).toMatchObject({
        name: 'berth rm',
        status: { code: 2, message: 'container "x" not found' },
        attributes: { 'berth.error_code': 'NOT_FOUND', 'process.exit.code': 1 },
      });
      expect(root?.events.map((e) => e.name)).toEqual(['exception']);
    } finally {
      silent = false;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
