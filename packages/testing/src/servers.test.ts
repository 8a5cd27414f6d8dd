import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, startNats, startRedis, startRegistry } from './servers.js';

/** Sends one line to a TCP server and resolves with the first chunk it answers. */
function exchange(port: number, send: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.once('error', reject);
    s.once('data', (b) => {
      s.destroy();
      resolve(b.toString());
    });
    if (send !== undefined) s.write(send);
  });
}

describe('startNats', () => {
  it('starts on a port it picked itself, restarts on the same port, and cleans up', async () => {
    const nats = await startNats();
    try {
      expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
      expect(await exchange(nats.port, undefined)).toMatch(/^INFO \{.*"jetstream":true/);
      const firstPid = nats.proc.pid;
      await nats.restart();
      expect(nats.proc.pid).not.toBe(firstPid);
      expect(await exchange(nats.port, undefined)).toMatch(/^INFO /);
    } finally {
      await nats.stop();
    }
    expect(nats.proc.exitCode !== null || nats.proc.signalCode !== null).toBe(true);
    expect(existsSync(nats.dir)).toBe(false);
  });

  it('gives two servers different ports', async () => {
    const [a, b] = await Promise.all([startNats({ jetstream: false }), startNats({ jetstream: false })]);
    try {
      expect(a.port).not.toBe(b.port);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe('startRedis', () => {
  it('answers PING on loopback and cleans up', async () => {
    const redis = await startRedis();
    try {
      expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
      expect(await exchange(redis.port, 'PING\r\n')).toBe('+PONG\r\n');
    } finally {
      await redis.stop();
    }
    expect(existsSync(redis.dir)).toBe(false);
  });
});

describe('startRegistry', () => {
  it('serves the distribution API on loopback', async () => {
    const reg = await startRegistry();
    try {
      const res = await fetch(`${reg.url}/v2/`);
      expect(res.status).toBe(200);
      expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    } finally {
      await reg.stop();
    }
    expect(existsSync(reg.dir)).toBe(false);
  });
});

describe('freePort', () => {
  it('returns a bindable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(1023);
    expect(port).toBeLessThan(65536);
  });
});
