import { type BerthError, Code, toBerthError } from '@berth/api';
import {
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import type { HandlerDeps } from '../handlers/index.js';
import { LazySpan } from './lazy-span.js';
import { beginCriCall } from './metrics.js';

// What every CRI call records, whichever gRPC server carries it (server.ts on grpc-js, or
// berth-server.ts on berth's own HTTP/2): a span continuing the caller's trace, the metrics, and
// the access log line. One place, so the two servers cannot drift apart.

const tracer = trace.getTracer('berth.cri-gateway');

// RPCs kubelet polls every few seconds: their access lines go to debug so info stays readable.
const POLLED = /^(RuntimeService|ImageService)\/(List\w*|\w*Status|Version|ImageFsInfo|\w*Stats)$/;

/** Whether `rpc` ("RuntimeService/ListContainers") is one kubelet polls (access line at debug). */
export function isPolled(rpc: string): boolean {
  return POLLED.test(rpc);
}

/**
 * A polled read answered within this long, successfully, outside any sampled trace of its caller
 * and while debug logging is off, records no span: kubelet's polls (several calls a second per
 * node, each a span of ~0.5 KB in the span store) would otherwise push every trace worth reading
 * out of the bounded store within minutes, and the span cost the gateway a third of such a call's
 * CPU (bench/cri-server.ts). Its metrics count it as before; a slow or failed one is traced.
 */
export const UNTRACED_POLL_MS = 100;

// The RPC conventions' attributes of each RPC, made once (copied into each call's span).
const rpcBase = new Map<string, Readonly<Record<string, string>>>();

/** The span attributes of one CRI call: RPC conventions plus the pod and container it names. */
function rpcAttributes(rpc: string, request: unknown): Record<string, string> {
  let base = rpcBase.get(rpc);
  if (!base) {
    base = {
      'rpc.system': 'grpc',
      'rpc.service': `runtime.v1.${rpc.slice(0, rpc.indexOf('/'))}`,
      'rpc.method': rpc,
    };
    rpcBase.set(rpc, base);
  }
  const a: Record<string, string> = { ...base };
  if (request === null || typeof request !== 'object') return a;
  const r = request as Record<string, unknown>;
  const pod = r.podSandboxId ?? r.pod_sandbox_id;
  const ctr = r.containerId ?? r.container_id;
  if (typeof pod === 'string' && pod) a['berth.pod.id'] = pod;
  if (typeof ctr === 'string' && ctr) a['berth.container.id'] = ctr;
  return a;
}

/** One CRI call being observed: the context its handler runs in, and how it ends. */
export interface ObservedCall {
  /** The caller's trace context with this call's server span: run the handler inside it. */
  readonly context: Context;
  /**
   * Ends the call's span, metrics and access line: OK without an argument, else with the error
   * (anything thrown), which is returned as a BerthError for the wire. Only the first end counts.
   */
  end(raw?: unknown): BerthError | undefined;
}

/**
 * Starts observing a CRI call of `rpc` ("<Service>/<Method>") with its decoded request; the
 * caller's W3C trace context is read from `carrier` (the call's metadata) through `getter`.
 */
export function observeCall<C>(opts: {
  rpc: string;
  request: unknown;
  carrier: C;
  getter: TextMapGetter<C>;
  deps: HandlerDeps;
}): ObservedCall {
  const { rpc, deps } = opts;
  const polled = isPolled(rpc);
  const finish = beginCriCall(rpc);
  const parent = propagation.extract(context.active(), opts.carrier, opts.getter);
  // performance.now() values: the SDK takes them as times on its own clock (start and end alike).
  const started = performance.now();
  // Started on first use (lazy-span.ts): a read answered from memory starts it after its reply.
  const span = new LazySpan(() =>
    tracer.startSpan(
      `cri/${rpc}`,
      { kind: SpanKind.SERVER, attributes: rpcAttributes(rpc, opts.request), startTime: started },
      parent,
    ),
  );
  let ended = false;
  return {
    context: trace.setSpan(parent, span),
    end(raw?: unknown) {
      if (ended) return undefined;
      ended = true;
      const now = performance.now();
      if (raw === undefined) {
        if (polled && !span.started && now - started < UNTRACED_POLL_MS && !traced(parent, deps)) {
          finish();
          return undefined;
        }
        span.setStatus({ code: SpanStatusCode.OK });
        span.end(now);
        finish();
        accessLog(deps, rpc, span, 'OK', started, now);
        return undefined;
      }
      const err = toBerthError(raw);
      if (err.code === Code.INTERNAL) deps.log.error({ err: raw, rpc }, 'CRI request failed');
      span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
      span.setAttribute('berth.error_code', err.code);
      span.recordException({ name: err.code, message: err.message }, now);
      span.end(now);
      finish(err);
      accessLog(deps, rpc, span, err.code, started, now);
      return err;
    },
  };
}

/**
 * Whether a quick polled read must still be traced: its caller's span came with the sampled flag
 * (W3C traceparent flags bit 0), or debug logging is on (its access line names the trace).
 */
function traced(parent: Context, deps: HandlerDeps): boolean {
  const sc = trace.getSpanContext(parent);
  return (sc !== undefined && (sc.traceFlags & TraceFlags.SAMPLED) !== 0) || deps.log.isLevelEnabled('debug');
}

/**
 * The access log line of one CRI call, with its trace id (kubelet's logs name no trace). The line
 * is built only when its level is on: kubelet polls the read RPCs, whose lines go to debug.
 */
function accessLog(
  deps: HandlerDeps,
  rpc: string,
  span: Span,
  outcome: string,
  started: number,
  ended: number,
): void {
  const level = outcome === 'OK' && isPolled(rpc) ? 'debug' : 'info';
  if (!deps.log.isLevelEnabled(level)) return;
  const line = {
    rpc,
    outcome,
    ms: Math.round((ended - started) * 10) / 10,
    trace_id: span.spanContext().traceId,
  };
  deps.log[level](line, 'CRI request');
}
