import { toBerthError } from '@berth/api/errors';
import { type Attributes, context, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { redactUrl } from '../redact.js';
import { inTraceOf } from './traceparent.js';

const tracer = trace.getTracer('berth');

/**
 * Runs `fn` as an active child span `name` of the current one, so the work it does and the calls
 * it makes nest under it. A failure marks the span ERROR with its berth error code and records the
 * exception as a span event; the error propagates unchanged.
 */
export function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  return tracer.startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      const out = await fn(span);
      span.setStatus({ code: SpanStatusCode.OK });
      return out;
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** Marks a span failed by `err`: ERROR status, berth.error_code, the exception as an event. */
export function failSpan(span: Span, err: unknown): void {
  const e = toBerthError(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  span.setAttribute('berth.error_code', e.code);
  span.recordException({ name: e.code, message: e.message });
}

// Names whose values are secrets wherever they appear: flags (--password x, --token=x) and
// environment assignments (DB_PASSWORD=x).
const SECRET_NAME = /(pass(word|wd)?|secret|token|credential|api[-_]?key|auth|private[-_]?key)/i;
const REDACTED = '[REDACTED]';

/**
 * The arguments of a command with secrets replaced by [REDACTED], for span attributes and logs:
 * the value of a secret-named flag (`--password x`, `--token=x`), the value of a secret-named
 * `NAME=value` assignment, and the user:password of a URL.
 */
export function redactArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  let hideNext = false;
  for (const a of args) {
    if (hideNext) {
      out.push(REDACTED);
      hideNext = false;
      continue;
    }
    const flag = /^(--?[A-Za-z0-9][\w-]*)(=.*)?$/.exec(a);
    if (flag?.[1] && SECRET_NAME.test(flag[1])) {
      if (flag[2] !== undefined) out.push(`${flag[1]}=${REDACTED}`);
      else {
        out.push(a);
        hideNext = true;
      }
      continue;
    }
    const assign = /^([A-Za-z_][A-Za-z0-9_.-]*)=/.exec(a);
    if (assign?.[1] && SECRET_NAME.test(assign[1])) {
      out.push(`${assign[1]}=${REDACTED}`);
      continue;
    }
    out.push(/^[a-z][a-z0-9+.-]*:\/\/[^/@\s]*@/i.test(a) ? redactUrl(a) : a);
  }
  return out;
}
export { SpanKind } from '@opentelemetry/api';

/** Adds berth's attributes (image ref, container id, ...) to the active span, if any. */
export function annotateSpan(attributes: Attributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}

/**
 * Records a finished span `name` in the trace of `traceparent` (a child of that span), linked to
 * the span active now: one moment that belongs to two traces, e.g. a process's exit announced in
 * the trace of the stop that caused it and also shown in the trace of the run that started it.
 */
export function linkedSpan(name: string, attributes: Attributes, traceparent: string): void {
  const here = trace.getSpanContext(context.active());
  inTraceOf(traceparent, () => {
    const span = tracer.startSpan(name, { attributes, ...(here ? { links: [{ context: here }] } : {}) });
    span.setStatus({ code: SpanStatusCode.OK });
    span.end();
  });
}

/** The trace id of a traceparent header value (its second field). */
export function traceIdOfTraceparent(traceparent: string): string {
  return traceparent.split('-')[1] ?? '';
}
