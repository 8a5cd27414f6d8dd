// A TCP relay in front of a real server (Redis, NATS) that a test can freeze: while frozen, bytes
// in both directions are held back, as in a network partition, without closing any connection.
import { once } from 'node:events';
import { createConnection, createServer, type Socket } from 'node:net';

/** A freezable TCP relay; `url` is the server's URL with the relay's host and port. */
export interface TcpRelay {
  url: string;
  port: number;
  /** Holds back every byte in both directions until thaw(). */
  freeze(): void;
  /** Delivers what was held back and forwards again. */
  thaw(): void;
  stop(): Promise<void>;
}

/**
 * Starts a relay on a free loopback port forwarding to `target` (a URL such as
 * `redis://127.0.0.1:6379`). Connections opened while frozen are accepted and held like the others.
 */
export async function startTcpRelay(target: string): Promise<TcpRelay> {
  const up = new URL(target);
  let frozen = false;
  const held: { to: Socket; data: Buffer }[] = [];
  const sockets = new Set<Socket>();
  const send = (to: Socket, data: Buffer) => {
    if (frozen) held.push({ to, data });
    else if (!to.destroyed) to.write(data);
  };
  const server = createServer((client) => {
    const upstream = createConnection({ host: up.hostname, port: Number(up.port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      // A reset on one side ends the other: the relay never outlives the connection it carries.
      s.on('error', () => undefined);
    }
    client.on('data', (d: Buffer) => send(upstream, d));
    upstream.on('data', (d: Buffer) => send(client, d));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('relay: no address');
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(addr.port);
  return {
    url: url.toString().replace(/\/$/, ''),
    port: addr.port,
    freeze: () => {
      frozen = true;
    },
    thaw: () => {
      frozen = false;
      for (const { to, data } of held.splice(0)) if (!to.destroyed) to.write(data);
    },
    async stop() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
}
