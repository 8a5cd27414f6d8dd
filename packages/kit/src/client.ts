import {
  BerthError,
  Code,
  codeFromNats,
  DEFAULT_NAMESPACE,
  Header,
  isCode,
  type Service,
  subjectOf,
} from '@berth/api';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ErrorCode, JSONCodec, type NatsConnection, NatsError, headers as natsHeaders } from 'nats';
import { injectTrace } from './telemetry.js';

const json = JSONCodec<unknown>();
const tracer = trace.getTracer('berth.client');

/** Options of one call. */
export interface CallOptions {
  /** Target node, required for host-local services. */
  node?: string;
  namespace?: string;
  timeoutMs: number;
}

/**
 * Sends one request to a service operation and returns its decoded reply. Errors come back as
 * BerthError: the callee's own code, UNAVAILABLE when nothing answers, DEADLINE_EXCEEDED on timeout.
 */
export async function call<O>(
  nc: NatsConnection,
  service: Service,
  op: string,
  payload: unknown,
  opts: CallOptions,
): Promise<O> {
  const subject = subjectOf(service, op, opts.node);
  const span = tracer.startSpan(`${service}/${op}`, {
    kind: SpanKind.CLIENT,
    attributes: { 'rpc.method': op },
  });
  const ctx = trace.setSpan(context.active(), span);
  const h = natsHeaders();
  h.set(Header.namespace, opts.namespace ?? DEFAULT_NAMESPACE);
  injectTrace(h, ctx);
  try {
    const reply = await nc.request(subject, json.encode(payload ?? {}), {
      timeout: opts.timeoutMs,
      headers: h,
    });
    const errCode = reply.headers?.get('Nats-Service-Error-Code');
    if (errCode) {
      let wire: unknown;
      try {
        wire = (json.decode(reply.data) as { error?: unknown }).error;
      } catch {
        wire = undefined;
      }
      const w = wire as { code?: unknown; message?: unknown } | undefined;
      const code = isCode(w?.code) ? w.code : codeFromNats(Number(errCode));
      const message =
        typeof w?.message === 'string' ? w.message : (reply.headers?.get('Nats-Service-Error') ?? '');
      throw new BerthError(code, message);
    }
    span.setStatus({ code: SpanStatusCode.OK });
    return (reply.data.length ? json.decode(reply.data) : {}) as O;
  } catch (err) {
    const e = mapTransportError(err, service, op, subject, opts.timeoutMs);
    span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
    throw e;
  } finally {
    span.end();
  }
}

function mapTransportError(
  err: unknown,
  service: Service,
  op: string,
  subject: string,
  timeoutMs: number,
): BerthError {
  if (err instanceof BerthError) return err;
  if (err instanceof NatsError) {
    if (err.code === ErrorCode.NoResponders) {
      return new BerthError(
        Code.UNAVAILABLE,
        `${service} is unavailable: no responder for "${op}" on ${subject}`,
        {
          cause: err,
        },
      );
    }
    if (err.code === ErrorCode.Timeout) {
      return new BerthError(
        Code.DEADLINE_EXCEEDED,
        `${service} did not answer "${op}" within ${timeoutMs} ms`,
        {
          cause: err,
        },
      );
    }
    if (err.code === ErrorCode.MaxPayloadExceeded) {
      // As gRPC does for a message over its limit.
      return new BerthError(
        Code.RESOURCE_EXHAUSTED,
        `request to ${service} "${op}" is larger than the NATS server's max_payload`,
        { cause: err },
      );
    }
    if (err.code === ErrorCode.ConnectionClosed || err.code === ErrorCode.Disconnect) {
      return new BerthError(Code.UNAVAILABLE, `NATS connection lost while calling ${service} "${op}"`, {
        cause: err,
      });
    }
  }
  return new BerthError(
    Code.INTERNAL,
    `calling ${service} "${op}": ${(err as Error)?.message ?? String(err)}`,
    {
      cause: err,
    },
  );
}

/**
 * Builds a typed client from a table of operations and their timeouts. Each method takes the
 * request payload and returns the reply type declared in the table.
 */
export function makeClient<T extends Record<string, { in: unknown; out: unknown }>>(
  nc: NatsConnection,
  service: Service,
  timeouts: { [K in keyof T]: number },
  base: { node?: string; namespace?: string } = {},
): { [K in keyof T]: (input: T[K]['in'], opts?: Partial<CallOptions>) => Promise<T[K]['out']> } {
  const out = {} as {
    [K in keyof T]: (input: T[K]['in'], opts?: Partial<CallOptions>) => Promise<T[K]['out']>;
  };
  for (const op of Object.keys(timeouts) as (keyof T & string)[]) {
    out[op] = (input, o) => call(nc, service, op, input, { ...base, timeoutMs: timeouts[op], ...o });
  }
  return out;
}
