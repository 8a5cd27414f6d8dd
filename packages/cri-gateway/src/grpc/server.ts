import { BerthError, Code, grpcStatusOf, toBerthError } from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from '@opentelemetry/api';
import type { HandlerDeps, StreamHandler, UnaryHandler } from '../handlers/index.js';
import { CriService, criServiceDefinition } from '../proto.js';
import { beginCriCall } from './metrics.js';

/** Largest message either way, as containerd's CRI (16 MiB); grpc-js defaults to 4 MiB. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const tracer = trace.getTracer('berth.cri-gateway');

// RPCs kubelet polls every few seconds: their access lines go to debug so info stays readable.
const POLLED = /^(RuntimeService|ImageService)\/(List\w*|\w*Status|Version|ImageFsInfo|\w*Stats)$/;

/** The span attributes of one CRI call: RPC conventions plus the pod and container it names. */
function rpcAttributes(rpc: string, request: unknown): Record<string, string> {
  const a: Record<string, string> = {
    'rpc.system': 'grpc',
    'rpc.service': `runtime.v1.${rpc.slice(0, rpc.indexOf('/'))}`,
    'rpc.method': rpc,
  };
  const r = (request ?? {}) as Record<string, unknown>;
  const pod = r.podSandboxId ?? r.pod_sandbox_id;
  const ctr = r.containerId ?? r.container_id;
  if (typeof pod === 'string' && pod) a['berth.pod.id'] = pod;
  if (typeof ctr === 'string' && ctr) a['berth.container.id'] = ctr;
  return a;
}

/**
 * The access log line of one CRI call, with its trace id (kubelet's logs name no trace). The line
 * is built only when its level is on: kubelet polls the read RPCs, whose lines go to debug.
 */
function accessLog(
  deps: HandlerDeps,
  rpc: string,
  polled: boolean,
  span: { spanContext(): { traceId: string } },
  outcome: string,
  started: number,
): void {
  const level = polled && outcome === 'OK' ? 'debug' : 'info';
  if (!deps.log.isLevelEnabled(level)) return;
  const line = {
    rpc,
    outcome,
    ms: Math.round((performance.now() - started) * 10) / 10,
    trace_id: span.spanContext().traceId,
  };
  deps.log[level](line, 'CRI request');
}

// Reads W3C trace context from gRPC metadata, so a caller's trace continues into berth.
const metadataGetter: TextMapGetter<grpc.Metadata> = {
  get: (md, key) => {
    const v = md.get(key);
    return v.length ? String(v[0]) : undefined;
  },
  keys: (md) => Object.keys(md.getMap()),
};

/** A berth error as a gRPC status: the code through the total table, the message as details. */
export function toGrpcStatus(err: unknown): grpc.ServerErrorResponse & { code: grpc.status } {
  const e = toBerthError(err);
  return Object.assign(new Error(e.message), {
    code: grpcStatusOf[e.code] as grpc.status,
    details: e.message,
  });
}

/**
 * Builds the CRI gRPC server: every method of RuntimeService and ImageService is registered; the
 * ones in `handlers` (unary) or `streams` (server-streaming), keyed "<Service>/<Method>", run; all
 * others answer UNIMPLEMENTED naming the RPC.
 */
export function createCriServer(opts: {
  deps: HandlerDeps;
  handlers: Readonly<Record<string, UnaryHandler>>;
  streams?: Readonly<Record<string, StreamHandler>>;
}): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  for (const full of Object.values(CriService)) {
    const def = criServiceDefinition(full);
    const short = full.slice(full.lastIndexOf('.') + 1);
    const impl: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(def)) {
      const rpc = `${short}/${name}`;
      const handler = opts.handlers[rpc];
      const stream = opts.streams?.[rpc];
      if (handler && !method.requestStream && !method.responseStream) {
        impl[name] = unary(rpc, handler, opts.deps);
      } else if (stream && !method.requestStream && method.responseStream) {
        impl[name] = serverStream(rpc, stream, opts.deps);
      } else {
        impl[name] = unimplemented(rpc, method);
      }
    }
    server.addService(def, impl);
  }
  return server;
}

function unary(
  rpc: string,
  handler: UnaryHandler,
  deps: HandlerDeps,
): grpc.handleUnaryCall<unknown, unknown> {
  const polled = POLLED.test(rpc);
  return (call, callback) => {
    const finish = beginCriCall(rpc);
    const parent = propagation.extract(context.active(), call.metadata, metadataGetter);
    const span = tracer.startSpan(
      `cri/${rpc}`,
      { kind: SpanKind.SERVER, attributes: rpcAttributes(rpc, call.request) },
      parent,
    );
    const started = performance.now();
    context
      .with(trace.setSpan(parent, span), () => handler(call.request, deps))
      .then(
        (reply) => {
          span.setStatus({ code: SpanStatusCode.OK });
          span.end();
          finish();
          accessLog(deps, rpc, polled, span, 'OK', started);
          callback(null, reply);
        },
        (raw: unknown) => {
          const err = toBerthError(raw);
          if (err.code === Code.INTERNAL) deps.log.error({ err: raw, rpc }, 'CRI request failed');
          span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
          span.setAttribute('berth.error_code', err.code);
          span.recordException({ name: err.code, message: err.message });
          span.end();
          finish(err);
          accessLog(deps, rpc, polled, span, err.code, started);
          callback(toGrpcStatus(err));
        },
      );
  };
}

/**
 * A server-streaming call: writes each message the handler yields, honouring backpressure, and
 * ends with OK; an error (or the client cancelling) ends it with the mapped status.
 */
function serverStream(
  rpc: string,
  handler: StreamHandler,
  deps: HandlerDeps,
): grpc.handleServerStreamingCall<unknown, unknown> {
  const polled = POLLED.test(rpc);
  return (call) => {
    const finish = beginCriCall(rpc);
    const parent = propagation.extract(context.active(), call.metadata, metadataGetter);
    const span = tracer.startSpan(
      `cri/${rpc}`,
      { kind: SpanKind.SERVER, attributes: rpcAttributes(rpc, call.request) },
      parent,
    );
    const started = performance.now();
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    const run = async () => {
      for await (const message of handler(call.request, deps, ac.signal)) {
        if (call.cancelled) return;
        if (!call.write(message)) await new Promise((r) => call.once('drain', r));
      }
    };
    context.with(trace.setSpan(parent, span), run).then(
      () => {
        span.setStatus({ code: SpanStatusCode.OK });
        span.end();
        finish();
        accessLog(deps, rpc, polled, span, 'OK', started);
        call.end();
      },
      (raw: unknown) => {
        const err = toBerthError(raw);
        if (err.code === Code.INTERNAL) deps.log.error({ err: raw, rpc }, 'CRI request failed');
        span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
        span.setAttribute('berth.error_code', err.code);
        span.recordException({ name: err.code, message: err.message });
        span.end();
        finish(err);
        accessLog(deps, rpc, polled, span, err.code, started);
        call.emit('error', toGrpcStatus(err));
      },
    );
  };
}

function unimplemented(rpc: string, method: grpc.MethodDefinition<unknown, unknown>): grpc.UntypedHandleCall {
  const status = () => {
    const err = new BerthError(Code.UNIMPLEMENTED, `CRI ${rpc} is not implemented by berth yet`);
    beginCriCall(rpc)(err);
    return toGrpcStatus(err);
  };
  if (method.responseStream) {
    // Server-streaming and bidi calls end with the status as their error.
    return (call: grpc.ServerWritableStream<unknown, unknown>) => {
      call.emit('error', status());
    };
  }
  return (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(status());
}
