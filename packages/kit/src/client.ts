import {
  BerthError,
  Code,
  codeFromNats,
  DEFAULT_NAMESPACE,
  Header,
  type InputOf,
  isCode,
  isLongOp,
  NAMESPACE_PATTERN,
  NAMESPACE_RULE,
  type OpName,
  type OutputOf,
  type ServiceDef,
  subjectOf,
} from '@berth/api';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { ErrorCode, JSONCodec, type NatsConnection, NatsError, headers as natsHeaders } from 'nats';
import { lostCallee, watchedRequest } from './heartbeat.js';
import { type LocalReply, localCall, refuseOverMaxPayload } from './local-route.js';
import { RouteLost } from './socket-route.js';
import { injectTrace } from './telemetry.js';
import { rpcAttributes } from './tracing/rpc.js';

const json = JSONCodec<unknown>();
const tracer = trace.getTracer('berth.client');

/** Options of one call. */
export interface CallOptions {
  /** Target node, required for host-local services. */
  node?: string;
  namespace?: string;
  /** Overrides the operation's timeout from its definition. */
  timeoutMs?: number;
}

/**
 * Sends one request to a service operation and returns its reply, validated against the
 * operation's output schema. Errors come back as BerthError: the callee's own code, UNAVAILABLE
 * when nothing answers (or, on a long operation, when the callee's heartbeats stop), DEADLINE_EXCEEDED on timeout, INTERNAL (naming service and operation) for a
 * reply that does not match the contract.
 */
export async function call<S extends ServiceDef, K extends OpName<S>>(
  nc: NatsConnection,
  service: S,
  op: K,
  payload: InputOf<S, K>,
  opts: CallOptions = {},
): Promise<OutputOf<S, K>> {
  const def = service.ops[op];
  if (!def) throw new BerthError(Code.INTERNAL, `${service.name} has no operation "${op}"`);
  const name = service.name;
  const timeoutMs = opts.timeoutMs ?? def.timeoutMs;
  const subject = subjectOf(service, op, opts.node);
  const namespace = opts.namespace ?? DEFAULT_NAMESPACE;
  const span = tracer.startSpan(`${name}/${op}`, {
    kind: SpanKind.CLIENT,
    attributes: rpcAttributes({ service: name, op, subject, namespace, node: opts.node }),
  });
  const ctx = trace.setSpan(context.active(), span);
  if (!NAMESPACE_PATTERN.test(namespace)) {
    span.end();
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `${name} ${op}: invalid namespace ${JSON.stringify(namespace)}: ${NAMESPACE_RULE}`,
    );
  }
  const h = natsHeaders();
  h.set(Header.namespace, namespace);
  injectTrace(h, ctx);
  try {
    const data = json.encode(payload ?? {});
    const deadline = Date.now() + timeoutMs;
    // A service of this process or of this node that serves the subject takes it without
    // nats-server when it can (local-route.ts); else, or when it declines, NATS carries it
    // within what is left of the timeout.
    const long = isLongOp(def);
    const lost = lostCallee(name, op, opts.node);
    refuseOverMaxPayload(nc, data, h);
    const routed = localCall(nc, subject, data, h, { timeoutMs, long, lost });
    const viaNats = (): Promise<LocalReply> => {
      const left = Math.max(1, deadline - Date.now());
      // A long call is watched by heartbeats: a callee that dies is noticed in seconds (heartbeat.ts).
      return long
        ? watchedRequest(nc, subject, data, {
            timeoutMs: left,
            headers: h,
            lost,
          })
        : nc.request(subject, data, { timeout: left, headers: h });
    };
    const pending = routed ? routed.then((r) => r ?? viaNats()) : viaNats();
    // The contracts build a schema on first use (lazy-zod.ts): the reply's is built while the
    // callee works rather than after its answer (a container list's ~300 schemas take a short CLI
    // command ~5 ms). nats.js sends the request from a microtask queued before this one. A schema
    // that fails to build fails the parse below as well, which reports it.
    queueMicrotask(() => {
      try {
        void def.output._zod;
      } catch {}
    });
    const reply = await pending;
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
    let body: unknown;
    try {
      body = reply.data.length ? json.decode(reply.data) : {};
    } catch {
      throw new BerthError(Code.INTERNAL, `${name} ${op}: the reply is not valid JSON`);
    }
    const parsed = def.output.safeParse(body);
    if (!parsed.success) {
      throw new BerthError(
        Code.INTERNAL,
        `${name} ${op}: the reply does not match its contract: ${describeIssue(parsed.error)}`,
      );
    }
    span.setStatus({ code: SpanStatusCode.OK });
    return parsed.data as OutputOf<S, K>;
  } catch (err) {
    const e = mapTransportError(err, name, op, subject, timeoutMs);
    span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
    span.setAttribute('berth.error_code', e.code);
    span.recordException({ name: e.code, message: e.message });
    throw e;
  } finally {
    span.end();
  }
}

type ZodIssues = { issues: readonly { path: readonly PropertyKey[]; message: string }[] };

/** The first problem zod found, as `field.path: message` (`whole` when it is about the whole value). */
export function describeIssue(error: ZodIssues, whole = 'body'): string {
  const issue = error.issues[0];
  const where = issue?.path.length ? issue.path.map(String).join('.') : whole;
  return `${where}: ${issue?.message ?? 'invalid'}`;
}

/** The INVALID_ARGUMENT a request failing its input schema gets, naming service, operation and field. */
export function invalidInput(service: string, op: string, error: ZodIssues): BerthError {
  return new BerthError(
    Code.INVALID_ARGUMENT,
    `${service} ${op}: invalid ${describeIssue(error, 'request')}`,
  );
}

function mapTransportError(
  err: unknown,
  service: string,
  op: string,
  subject: string,
  timeoutMs: number,
): BerthError {
  if (err instanceof BerthError) return err;
  if (err instanceof RouteLost) {
    // As a long call's caller hears of a callee whose heartbeats stop.
    return new BerthError(
      Code.UNAVAILABLE,
      `${service} on this node was lost while answering "${op}" (it may have been carried out)`,
      { cause: err },
    );
  }
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
 * True when a call failed because nothing serves its subject (NATS "no responders"): the callee
 * is down, or it is an older build without that operation. Not for a timeout or a refusal.
 */
export function noResponders(err: unknown): boolean {
  return (
    err instanceof BerthError &&
    err.code === Code.UNAVAILABLE &&
    err.cause instanceof NatsError &&
    err.cause.code === ErrorCode.NoResponders
  );
}

/** A typed client of one service: a method per operation, input and reply typed by the definition. */
export type Client<S extends ServiceDef> = {
  [K in OpName<S>]: (input: InputOf<S, K>, opts?: CallOptions) => Promise<OutputOf<S, K>>;
};

/**
 * Builds the typed client of a service from its definition: each method sends the operation with
 * its defined timeout (overridable per call) and validates the reply.
 */
export function client<S extends ServiceDef>(
  nc: NatsConnection,
  service: S,
  base: { node?: string; namespace?: string } = {},
): Client<S> {
  const out = {} as Client<S>;
  for (const op of Object.keys(service.ops) as OpName<S>[]) {
    out[op] = ((input: InputOf<S, typeof op>, o?: CallOptions) =>
      call(nc, service, op, input, { ...base, ...o })) as Client<S>[typeof op];
  }
  return out;
}
