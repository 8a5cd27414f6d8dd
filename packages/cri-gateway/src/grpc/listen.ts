import { unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { BerthCriServer } from './berth-server.js';
import { FrontSocket } from './front-socket.js';
import { prepareSocketPath, secureSocket } from './socket.js';

/** A CRI gRPC server serving a unix socket. */
export interface UnixListener {
  readonly socket: string;
  /**
   * Stops accepting, lets in-flight calls finish within graceMs, then cancels the rest and
   * removes the socket file, so a stale one never outlives the gateway.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * Serves a gRPC server on a unix socket: prepares the directory, binds with a umask that keeps
 * the socket private from its first instant, then sets mode 0600 and root ownership. berth's own
 * server (berth-server.ts) takes each connection as it is; grpc-js gets it through a FrontSocket,
 * so Go clients that send the socket's path as :authority are served rather than reset by
 * nghttp2 (see authority-front.ts).
 */
export async function listenUnix(
  server: grpc.Server | BerthCriServer,
  socket: string,
  runRoot: string,
  opts: { onProtocolError?: (err: Error) => void } = {},
): Promise<UnixListener> {
  await prepareSocketPath(socket, runRoot);
  if (!(server instanceof grpc.Server)) {
    const net = createServer({ allowHalfOpen: true }, (conn) => server.accept(conn));
    await listen(net, socket);
    await secureSocket(socket);
    return {
      socket,
      async close(graceMs) {
        const stopped = new Promise<void>((resolve) => net.close(() => resolve()));
        await server.close(graceMs);
        await stopped;
        await unlink(socket).catch(() => undefined);
      },
    };
  }
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const clients = new Set<Socket>();
  const net = createServer({ allowHalfOpen: true }, (conn) => {
    clients.add(conn);
    const front = new FrontSocket(
      conn,
      opts.onProtocolError ? { onProtocolError: opts.onProtocolError } : {},
    );
    conn.once('close', () => clients.delete(conn));
    injector.injectConnection(front);
  });
  await listen(net, socket);
  await secureSocket(socket);
  return {
    socket,
    close: (graceMs) => closeListener({ server, net, clients, socket, graceMs }),
  };
}

/**
 * Binds the socket under umask 0177, so it is never reachable by others, not even for the moment
 * before secureSocket. The umask is process-wide: it is restored in the same tick, since listen()
 * binds a unix socket synchronously, so files other code (a co-hosted service) creates meanwhile
 * keep their modes.
 */
function listen(net: Server, socket: string): Promise<void> {
  return new Promise((resolve, reject) => {
    net.once('error', reject);
    const old = process.umask(0o177);
    try {
      net.listen(socket, () => {
        net.off('error', reject);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
}

async function closeListener(opts: {
  server: grpc.Server;
  net: Server;
  clients: Set<Socket>;
  socket: string;
  graceMs: number;
}): Promise<void> {
  const stopped = new Promise<void>((resolve) => opts.net.close(() => resolve()));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      opts.server.forceShutdown();
      for (const c of opts.clients) c.destroy();
      resolve();
    }, opts.graceMs);
    timer.unref();
    opts.server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  // tryShutdown has closed every HTTP/2 session; a client that keeps its socket open is cut.
  for (const c of opts.clients) c.destroy();
  await stopped;
  await unlink(opts.socket).catch(() => undefined);
}
