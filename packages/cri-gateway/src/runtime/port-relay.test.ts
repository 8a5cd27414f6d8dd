import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NsenterPortRelay } from './port-relay.js';

// The port-forward relay with real nsenter and node processes, entering this process's own
// network namespace (needs root, as the gateway has), against real TCP servers.

const NETNS = `/proc/${process.pid}/ns/net`;
const relay = new NsenterPortRelay();
let server: Server;
let port: number;
const connections: Socket[] = [];

beforeAll(async () => {
  // Echoes what it reads, then says "bye" once the client ended its side (half-close).
  server = createServer({ allowHalfOpen: true }, (s) => {
    connections.push(s);
    s.on('data', (b) => s.write(b));
    s.on('end', () => s.end('bye'));
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});

afterAll(() => {
  server?.close();
});

/** A client's stream as the streaming server hands it over: push() is what the client sends. */
function clientStream() {
  const received: Buffer[] = [];
  const duplex = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      received.push(chunk);
      cb();
    },
  });
  return { duplex, received: () => Buffer.concat(received).toString() };
}

describe('NsenterPortRelay', () => {
  it('copies both ways and passes the end of input on as a half-close', async () => {
    const c = clientStream();
    const done = relay.forward(NETNS, port, c.duplex, new AbortController().signal);
    c.duplex.push('hello ');
    c.duplex.push('relay');
    c.duplex.push(null);
    await done;
    expect(c.received()).toBe('hello relaybye');
  });

  it('rejects UNAVAILABLE naming the port when nothing listens', async () => {
    const closed = createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const free = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const c = clientStream();
    await expect(relay.forward(NETNS, free, c.duplex, new AbortController().signal)).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringMatching(new RegExp(`port ${free} in ${NETNS}: .*ECONNREFUSED`)),
    });
  });

  it('ends the connection when the client goes away', async () => {
    const c = clientStream();
    const ac = new AbortController();
    const before = connections.length;
    const done = relay.forward(NETNS, port, c.duplex, ac.signal);
    c.duplex.push('x');
    await expect.poll(() => c.received()).toBe('x');
    const conn = connections[before];
    const closed = conn ? once(conn, 'close') : Promise.reject(new Error('no connection'));
    ac.abort();
    await done;
    await closed;
  });
});
