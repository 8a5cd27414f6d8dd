import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { redisCommand } from './resp.js';

// redisCommand against a plain TCP server standing in for a Redis server that misbehaves.
let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

/** A server that ends every connection as soon as it gets a command, without replying. */
async function closingServer(): Promise<number> {
  server = createServer((s) => s.once('data', () => s.end()));
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

describe('redisCommand', () => {
  it('rejects at once when the server closes the connection without a reply (a Sentinel CLIENT KILL)', async () => {
    const port = await closingServer();
    const t0 = Date.now();
    await expect(redisCommand(port, ['INFO', 'replication'])).rejects.toThrow(
      `127.0.0.1:${port} closed the connection before replying to INFO`,
    );
    // Well before its 5 s reply timer, which cannot fire on a socket already closed.
    expect(Date.now() - t0).toBeLessThan(4000);
  });
});
