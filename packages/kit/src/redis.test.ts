import { startRedis } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectRedis, type Redis } from './redis.js';

let server: Awaited<ReturnType<typeof startRedis>>;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = connectRedis(server.url);
  await redis.connect();
});

afterAll(async () => {
  await redis?.quit();
  await server?.stop();
});

describe('connectRedis', () => {
  it('reconnects after redis-server restarts, and commands issued meanwhile complete', async () => {
    await redis.set('berth:v1:test:k', 'before');
    const lost = new Promise((r) => redis.once('reconnecting', r));
    const exited = new Promise((r) => server.proc.once('exit', r));
    server.proc.kill('SIGTERM');
    await exited;
    await lost;
    // Issued while the server is down: queued, then sent once the connection is back.
    const queued = redis.set('berth:v1:test:k2', 'during');
    await server.restart();
    expect(await queued).toBe('OK');
    // appendonly keeps data across the restart.
    expect(await redis.mget('berth:v1:test:k', 'berth:v1:test:k2')).toEqual(['before', 'during']);
  });
});
