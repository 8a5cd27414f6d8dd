import { unlink } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { prepareSocketPath, secureSocket } from './socket.js';

/**
 * Binds a gRPC server to a unix socket: prepares the directory, binds with a umask that keeps the
 * socket private from its first instant, then sets mode 0660 and root ownership.
 */
export async function listenUnix(server: grpc.Server, socket: string, runRoot: string): Promise<void> {
  await prepareSocketPath(socket, runRoot);
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      );
    });
  } finally {
    process.umask(old);
  }
  await secureSocket(socket);
}

/**
 * Stops the server: in-flight calls may finish within graceMs, then the rest are cancelled.
 * The socket file is removed so a stale one never outlives the gateway.
 */
export async function closeServer(server: grpc.Server, socket: string, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  await unlink(socket).catch(() => undefined);
}
