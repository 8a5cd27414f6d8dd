import { randomBytes } from 'node:crypto';
import {
  type Context,
  context,
  createTraceState,
  ROOT_CONTEXT,
  type SpanContext,
  TraceFlags,
  trace,
} from '@opentelemetry/api';

// W3C Trace Context, level 1: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`. Written here
// rather than taken from @opentelemetry/core so a CLI command can carry trace context without
// loading the SDK's packages (see ../telemetry.ts).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZEROS = /^0+$/;

/** A fresh random trace id (32 lowercase hex digits, never all zero). */
export function newTraceId(): string {
  return randomId(16);
}

/** A fresh random span id (16 lowercase hex digits, never all zero). */
export function newSpanId(): string {
  return randomId(8);
}

function randomId(bytes: number): string {
  for (;;) {
    const id = randomBytes(bytes).toString('hex');
    if (!ZEROS.test(id)) return id;
  }
}

/** The traceparent header value of a span context. */
export function formatTraceparent(sc: SpanContext): string {
  const flags = (sc.traceFlags & 0xff).toString(16).padStart(2, '0');
  return `00-${sc.traceId}-${sc.spanId}-${flags}`;
}

/**
 * Parses a traceparent (and optional tracestate) header into a remote span context; undefined for
 * anything the specification says to ignore (bad shape, version ff, all-zero ids, extra fields
 * on version 00).
 */
export function parseTraceparent(value: string | undefined, tracestate?: string): SpanContext | undefined {
  if (!value) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string?,
  ];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (ZEROS.test(traceId) || ZEROS.test(spanId)) return undefined;
  const sc: SpanContext = {
    traceId,
    spanId,
    traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  if (tracestate) sc.traceState = createTraceState(tracestate);
  return sc;
}

/** The context `base` (default: the active one) with the span context of a traceparent as parent. */
export function contextFromTraceparent(
  value: string | undefined,
  tracestate?: string,
  base: Context = context.active(),
): Context {
  const sc = parseTraceparent(value, tracestate);
  return sc ? trace.setSpanContext(base, sc) : base;
}

/** The traceparent of the span active in `ctx`, or undefined when there is none. */
export function traceparentOf(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpanContext(ctx);
  return sc && !ZEROS.test(sc.traceId) ? formatTraceparent(sc) : undefined;
}

/**
 * Runs `fn` with the span of a stored traceparent as the only active context (none when there is
 * no traceparent): work done later on behalf of an earlier request, such as announcing a process's
 * exit, joins that request's trace.
 */
export function inTraceOf<T>(traceparent: string | undefined, fn: () => T): T {
  // Never the active context: work run from a watcher or timer callback would inherit the span
  // that was active when the watcher was set up, an unrelated request's.
  return context.with(contextFromTraceparent(traceparent, undefined, ROOT_CONTEXT), fn);
}
