import { BerthError, Code, grpcStatusOf, toBerthError } from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import { context, type TextMapGetter } from '@opentelemetry/api';
import { encodingOf } from '../handlers/encoded-reply.js';
import type { HandlerDeps, StreamHandler, UnaryHandler } from '../handlers/index.js';
import { CriService, criServiceDefinition } from '../proto.js';
import { MAX_MESSAGE_BYTES } from './grpc-wire.js';
import { beginCriCall } from './metrics.js';
import { observeCall } from './observe.js';

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
    server.addService(withKeptEncodings(def), impl);
  }
  return server;
}

function unary(
  rpc: string,
  handler: UnaryHandler,
  deps: HandlerDeps,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const obs = observeCall({
      rpc,
      request: call.request,
      carrier: call.metadata,
      getter: metadataGetter,
      deps,
    });
    context
      .with(obs.context, async () => handler(call.request, deps))
      .then(
        (reply) => {
          // The reply goes first: the client does not wait for the span, metrics and access line.
          callback(null, reply);
          obs.end();
        },
        (raw: unknown) => callback(toGrpcStatus(obs.end(raw))),
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
  return (call) => {
    const obs = observeCall({
      rpc,
      request: call.request,
      carrier: call.metadata,
      getter: metadataGetter,
      deps,
    });
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    const run = async () => {
      for await (const message of handler(call.request, deps, ac.signal)) {
        if (call.cancelled) return;
        if (!call.write(message)) await new Promise((r) => call.once('drain', r));
      }
    };
    context.with(obs.context, run).then(
      () => {
        obs.end();
        call.end();
      },
      (raw: unknown) => call.emit('error', toGrpcStatus(obs.end(raw))),
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

/** The service with each reply serializer writing the bytes a handler kept with its reply. */
function withKeptEncodings(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(def)) {
    const encode = method.responseSerialize;
    out[name] = { ...method, responseSerialize: (m: unknown) => encodingOf(m) ?? encode(m) };
  }
  return out;
}
