import type { Attributes, AttributeValue, HrTime } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';

/** The span kinds, as the OpenTelemetry API numbers them (INTERNAL 0 ... CONSUMER 4). */
export const SpanKindName = ['internal', 'server', 'client', 'producer', 'consumer'] as const;

/** One attribute value as stored: scalars, or arrays of them. */
export type StoredValue = string | number | boolean | (string | number | boolean)[];

/**
 * One finished span as berth stores it (one JSON line in the span store) and as `berth trace`
 * reads it: ids in lowercase hex, times in microseconds since the epoch, the process that made it.
 */
export interface SpanRecord {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  /** The API's SpanKind number (0 internal, 1 server, 2 client, 3 producer, 4 consumer). */
  kind: number;
  /** service.name of the process's resource. */
  service: string;
  /** service.instance.id of the process's resource. */
  instance: string;
  /** The instrumentation scope (tracer name). */
  scope: string;
  startUs: number;
  endUs: number;
  /** The API's SpanStatusCode (0 unset, 1 ok, 2 error) and its message. */
  status: { code: number; message?: string };
  attributes: Record<string, StoredValue>;
  events: { name: string; timeUs: number; attributes?: Record<string, StoredValue> }[];
  links: { traceId: string; spanId: string; attributes?: Record<string, StoredValue> }[];
}

/** Microseconds since the epoch of an OpenTelemetry HrTime ([seconds, nanoseconds]). */
export function hrToUs(t: HrTime): number {
  return t[0] * 1e6 + Math.round(t[1] / 1e3);
}

function storable(v: AttributeValue | undefined): StoredValue | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v))
    return v.filter((x) => x !== null && x !== undefined) as (string | number | boolean)[];
  return v as string | number | boolean;
}

/** Attributes without the undefined and null values the API allows. */
export function storedAttributes(a: Attributes | undefined): Record<string, StoredValue> {
  const out: Record<string, StoredValue> = {};
  for (const [k, v] of Object.entries(a ?? {})) {
    const s = storable(v);
    if (s !== undefined) out[k] = s;
  }
  return out;
}

/** The stored form of a span the SDK finished (services). */
export function fromReadableSpan(s: ReadableSpan): SpanRecord {
  const sc = s.spanContext();
  const res = s.resource.attributes;
  return {
    traceId: sc.traceId,
    spanId: sc.spanId,
    parentSpanId: s.parentSpanContext?.spanId ?? '',
    name: s.name,
    kind: s.kind,
    // A co-hosted process names each span's own service (tracing/service-attribution.ts).
    service: String(s.attributes['berth.service'] ?? res['service.name'] ?? ''),
    instance: String(res['service.instance.id'] ?? ''),
    scope: s.instrumentationScope.name,
    startUs: hrToUs(s.startTime),
    endUs: hrToUs(s.endTime),
    status: s.status.message ? { code: s.status.code, message: s.status.message } : { code: s.status.code },
    attributes: storedAttributes(s.attributes),
    events: s.events.map((e) => ({
      name: e.name,
      timeUs: hrToUs(e.time),
      ...(e.attributes ? { attributes: storedAttributes(e.attributes) } : {}),
    })),
    links: s.links.map((l) => ({
      traceId: l.context.traceId,
      spanId: l.context.spanId,
      ...(l.attributes ? { attributes: storedAttributes(l.attributes) } : {}),
    })),
  };
}

type OtlpValue =
  | { stringValue: string }
  | { boolValue: boolean }
  | { intValue: string }
  | { doubleValue: number }
  | { arrayValue: { values: OtlpValue[] } };

function otlpValue(v: StoredValue): OtlpValue {
  if (Array.isArray(v)) return { arrayValue: { values: v.map(otlpValue) } };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function otlpAttributes(a: Record<string, StoredValue> | undefined) {
  return Object.entries(a ?? {}).map(([key, v]) => ({ key, value: otlpValue(v) }));
}

const nanos = (us: number) => `${Math.round(us)}000`;

/**
 * The OTLP/JSON ExportTraceServiceRequest of spans of one process (one resource, one scope per
 * tracer name), as the OTLP/HTTP JSON encoding wants it: hex ids, nanosecond times as strings,
 * kinds and status codes as the protocol numbers them.
 */
export function toOtlpJson(spans: SpanRecord[], resource: Record<string, StoredValue>): string {
  const scopes = new Map<string, SpanRecord[]>();
  for (const s of spans) scopes.set(s.scope, [...(scopes.get(s.scope) ?? []), s]);
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: otlpAttributes(resource) },
        scopeSpans: [...scopes].map(([name, list]) => ({
          scope: { name },
          spans: list.map((s) => ({
            traceId: s.traceId,
            spanId: s.spanId,
            ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
            name: s.name,
            // OTLP numbers kinds from 1 (INTERNAL); the API from 0.
            kind: s.kind + 1,
            startTimeUnixNano: nanos(s.startUs),
            endTimeUnixNano: nanos(s.endUs),
            attributes: otlpAttributes(s.attributes),
            events: s.events.map((e) => ({
              name: e.name,
              timeUnixNano: nanos(e.timeUs),
              attributes: otlpAttributes(e.attributes),
            })),
            links: s.links.map((l) => ({
              traceId: l.traceId,
              spanId: l.spanId,
              attributes: otlpAttributes(l.attributes),
            })),
            status: { code: s.status.code, ...(s.status.message ? { message: s.status.message } : {}) },
          })),
        })),
      },
    ],
  });
}
