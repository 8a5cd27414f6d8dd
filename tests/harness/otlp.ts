/**
 * A small OTLP/HTTP trace receiver for end-to-end tests: what an OpenTelemetry collector would
 * see when the services export to OTEL_EXPORTER_OTLP_ENDPOINT.
 *
 * It listens on 127.0.0.1 on a free port and accepts POST /v1/traces with the OTLP JSON encoding,
 * which is what @opentelemetry/exporter-trace-otlp-http sends (it has no protobuf mode; that is
 * the -proto exporter), gzip-compressed or not. Every span is kept, flattened with the
 * `service.name` of its resource.
 *
 * Usage:
 *   const otlp = await startOtlpReceiver();
 *   env.OTEL_EXPORTER_OTLP_ENDPOINT = otlp.endpoint;   // http://127.0.0.1:<port>
 *   const span = await otlp.waitForSpan((s) => s.service === 'image-service' && s.name === '...');
 *   await otlp.stop();
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { waitFor } from './stack.js';

/** OTLP span kinds (the wire values: the API's SpanKind plus one). */
export const OtlpKind = {
  unspecified: 0,
  internal: 1,
  server: 2,
  client: 3,
  producer: 4,
  consumer: 5,
} as const;
export type OtlpKind = (typeof OtlpKind)[keyof typeof OtlpKind];

/** OTLP status codes. */
export const OtlpStatus = { unset: 0, ok: 1, error: 2 } as const;
export type OtlpStatus = (typeof OtlpStatus)[keyof typeof OtlpStatus];

/** One received span, flattened. Ids are lowercase hex; `parentSpanId` is '' for a root span. */
export interface ReceivedSpan {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  kind: OtlpKind;
  status: { code: OtlpStatus; message: string };
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
  /** Names of the span's events (`exception`, ...). */
  events: string[];
  /** The spans this one links to (a consumer to its producer). */
  links: { traceId: string; spanId: string }[];
}

/** A running receiver; see the module comment. */
export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  readonly endpoint: string;
  /**
   * The environment that makes a stack and its CLI export here: spans are sent every
   * `scheduleDelayMs` (the batch processor's default, 5 s, is slow for a test), and a CLI command
   * waits up to 5 s at exit for its export (a loaded test machine may need more than the default).
   */
  env(scheduleDelayMs?: number): NodeJS.ProcessEnv;
  /** Every span received so far, in arrival order. */
  spans(): ReceivedSpan[];
  /** Waits (bounded) until a span matching `pred` arrived and returns the first such span. */
  waitForSpan(pred: (s: ReceivedSpan) => boolean, timeoutMs?: number): Promise<ReceivedSpan>;
  /** Export requests that could not be decoded (should stay empty). */
  errors(): string[];
  stop(): Promise<void>;
}

interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface OtlpSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  status?: { code?: number; message?: string };
  attributes?: KeyValue[];
  events?: { name?: string }[];
  links?: { traceId?: string; spanId?: string }[];
}
interface ExportRequest {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

function scalar(v: AnyValue | undefined): string | number | boolean {
  if (!v) return '';
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return JSON.stringify((v.arrayValue.values ?? []).map(scalar));
  return '';
}

function attrs(kvs: KeyValue[] | undefined): Record<string, string | number | boolean> {
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, scalar(kv.value)]));
}

/** Flattens one OTLP JSON export request into spans. */
export function flattenExport(req: ExportRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service: String(resource['service.name'] ?? ''),
          name: s.name ?? '',
          traceId: s.traceId ?? '',
          spanId: s.spanId ?? '',
          parentSpanId: s.parentSpanId ?? '',
          kind: (s.kind ?? 0) as OtlpKind,
          status: { code: (s.status?.code ?? 0) as OtlpStatus, message: s.status?.message ?? '' },
          attributes: attrs(s.attributes),
          resource,
          events: (s.events ?? []).map((e) => e.name ?? ''),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId ?? '', spanId: l.spanId ?? '' })),
        });
      }
    }
  }
  return out;
}

async function body(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  return req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
}

/** Starts a receiver on 127.0.0.1 and a free port; see the module comment. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const received: ReceivedSpan[] = [];
  const errors: string[] = [];
  const server = createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    body(req).then(
      (buf) => {
        const type = req.headers['content-type'] ?? '';
        if (!type.startsWith('application/json')) {
          errors.push(`unsupported content-type "${type}"`);
          res.writeHead(415).end();
          return;
        }
        try {
          received.push(...flattenExport(JSON.parse(buf.toString('utf8')) as ExportRequest));
        } catch (err) {
          errors.push(`undecodable export: ${(err as Error).message}`);
          res.writeHead(400).end();
          return;
        }
        // An empty ExportTraceServiceResponse: everything accepted.
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      },
      (err: Error) => {
        errors.push(`reading the request failed: ${err.message}`);
        res.writeHead(400).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    env: (scheduleDelayMs = 200) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_BSP_SCHEDULE_DELAY: String(scheduleDelayMs),
      BERTH_OTLP_EXIT_MS: '5000',
    }),
    spans: () => [...received],
    errors: () => [...errors],
    async waitForSpan(pred, timeoutMs = 20_000) {
      return waitFor('a span to arrive', () => received.find(pred), timeoutMs).catch((err: Error) => {
        const seen = received.map((s) => `${s.service} ${s.name} kind=${s.kind} trace=${s.traceId}`);
        throw new Error(`${err.message}\nspans so far:\n${seen.join('\n')}\nerrors: ${errors.join('; ')}`);
      });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
