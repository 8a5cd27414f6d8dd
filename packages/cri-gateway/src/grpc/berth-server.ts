import type { Socket } from 'node:net';
import { BerthError, Code, grpcStatusOf } from '@berth/api';
import { encodingOf } from '../handlers/encoded-reply.js';
import type { HandlerDeps, StreamHandler, UnaryHandler } from '../handlers/index.js';
import { CriService, criServiceDefinition } from '../proto.js';
import { GrpcCall, type Route } from './grpc-call.js';
import { requestHead, sendErrorStatus, sendHttpError } from './grpc-wire.js';
import { H2Connection } from './h2-connection.js';
import { DEFAULT_LIMITS, type ServerLimits } from './h2-settings.js';
import type { H2Stream } from './h2-stream.js';
import type { HeaderField } from './hpack.js';

/**
 * A CRI gRPC server of berth's own: HTTP/2 spoken directly on each accepted socket (no
 * node:http2, no grpc-js), so Go clients' :authority needs no rewriting and a unary reply costs
 * one socket write. `accept` takes a connection; `close` shuts down gracefully.
 */
export interface BerthCriServer {
  /** Serves one client connection until it closes. */
  accept(socket: Socket): void;
  /**
   * Sends GOAWAY on every connection so in-flight calls finish and no new ones start; after
   * graceMs the connections still open are cut. Resolves when all are closed.
   */
  close(graceMs: number): Promise<void>;
}

/** The routes of both CRI services by HTTP/2 :path ("/runtime.v1.RuntimeService/Version"). */
export function criRoutes(opts: {
  handlers: Readonly<Record<string, UnaryHandler>>;
  streams?: Readonly<Record<string, StreamHandler>>;
}): Map<string, Route> {
  const routes = new Map<string, Route>();
  for (const full of Object.values(CriService)) {
    const def = criServiceDefinition(full);
    const short = full.slice(full.lastIndexOf('.') + 1);
    for (const [name, method] of Object.entries(def)) {
      const rpc = `${short}/${name}`;
      const route: Route = {
        rpc,
        // proto-loader's own codecs: handlers see exactly the messages grpc-js gave them.
        deserialize: (body) => method.requestDeserialize(body),
        // A reply whose bytes the handler kept (handlers/encoded-reply.ts) is written as they are.
        serialize: (message) => encodingOf(message) ?? method.responseSerialize(message),
      };
      const unary = opts.handlers[rpc];
      const stream = opts.streams?.[rpc];
      // Client- and bidi-streaming methods (none in CRI v1 today) stay UNIMPLEMENTED.
      if (unary && !method.requestStream && !method.responseStream) route.unary = unary;
      else if (stream && !method.requestStream && method.responseStream) route.stream = stream;
      routes.set(method.path, route);
    }
  }
  return routes;
}

/**
 * Builds berth's CRI server: every method of RuntimeService and ImageService is routed; those in
 * `handlers` (unary) or `streams` (server-streaming), keyed "<Service>/<Method>", run, all others
 * answer UNIMPLEMENTED naming the RPC. `onProtocolError` hears why a connection was closed for
 * breaking HTTP/2 (a bad preface, frame or header block).
 */
export function createBerthCriServer(opts: {
  deps: HandlerDeps;
  handlers: Readonly<Record<string, UnaryHandler>>;
  streams?: Readonly<Record<string, StreamHandler>>;
  onProtocolError?: (err: Error) => void;
  limits?: ServerLimits;
}): BerthCriServer {
  const routes = criRoutes(opts);
  const connections = new Set<H2Connection>();
  let closing = false;
  const onRequest = (stream: H2Stream, headers: HeaderField[]) => {
    const head = requestHead(headers);
    if (head.method !== 'POST') {
      return sendHttpError(
        stream,
        405,
        grpcStatusOf.UNIMPLEMENTED,
        `method ${head.method ?? '(none)'} is not POST`,
      );
    }
    // application/grpc, optionally with +proto or ;params (PROTOCOL-HTTP2.md).
    const ct = head.contentType ?? '';
    if (!ct.startsWith('application/grpc') || /^application\/grpc[^+;]/.test(ct)) {
      return sendHttpError(stream, 415, grpcStatusOf.INTERNAL, `invalid gRPC request content-type "${ct}"`);
    }
    const route = head.path === undefined ? undefined : routes.get(head.path);
    if (!route) {
      const err = new BerthError(
        Code.UNIMPLEMENTED,
        `the CRI server has no method ${head.path ?? '(no :path)'}`,
      );
      return sendErrorStatus(stream, err, false);
    }
    new GrpcCall(stream, headers, head, route, opts.deps);
  };
  return {
    accept(socket) {
      if (closing) {
        socket.destroy();
        return;
      }
      const conn = new H2Connection(socket, {
        onRequest,
        limits: opts.limits ?? DEFAULT_LIMITS,
        ...(opts.onProtocolError ? { onProtocolError: opts.onProtocolError } : {}),
      });
      connections.add(conn);
      void conn.closed().then(() => connections.delete(conn));
    },
    async close(graceMs) {
      closing = true;
      for (const c of connections) c.goAway();
      const all = Promise.all([...connections].map((c) => c.closed()));
      let timer: NodeJS.Timeout | undefined;
      const cut = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          for (const c of connections) c.destroy();
          resolve();
        }, graceMs);
        timer.unref();
      });
      await Promise.race([all.then(() => undefined), cut]);
      clearTimeout(timer);
      await all;
    },
  };
}
