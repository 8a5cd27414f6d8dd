import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { makeTestPki, startNats, startRedis, type TestPki } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { loadConfig } from './config.js';
import { connectNats } from './nats.js';
import { openRedis } from './redis.js';
import { startTestService } from './testdata/child.js';
import { TestApi } from './testdata/test-api.mjs';

// TLS to NATS and Redis with a CA made for this run: the servers want client certificates, the
// kit verifies the servers' certificates whether or not a CA is configured.

let pki: TestPki;
let nats: Awaited<ReturnType<typeof startNats>>;
let redis: Awaited<ReturnType<typeof startRedis>>;
const once = { waitOnFirstConnect: false, maxReconnectAttempts: 0 };

beforeAll(async () => {
  pki = await makeTestPki();
  const tls = { ca: pki.ca, ...pki.server, verifyClients: true };
  [nats, redis] = await Promise.all([
    startNats({ jetstream: false, tls }),
    startRedis({ appendonly: false, tls }),
  ]);
});
afterAll(async () => {
  await Promise.all([nats?.stop(), redis?.stop()]);
  await pki?.remove();
});

/** The BerthError a promise rejects with. */
async function refusal(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => new Error('connected, but should have been refused'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe('NATS over TLS', () => {
  it('connects with the CA and a client certificate, and requests round-trip', async () => {
    const nc = await connectNats({
      url: nats.url,
      name: 'kit-tls-test',
      tls: { ca: pki.ca, ...pki.client },
      extra: once,
    });
    try {
      nc.subscribe('tls.echo', { callback: (_e, m) => m.respond(m.data) });
      const reply = await nc.request('tls.echo', new TextEncoder().encode('over tls'), { timeout: 5000 });
      expect(new TextDecoder().decode(reply.data)).toBe('over tls');
      expect(nc.info?.tls_required).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it('refuses a server whose certificate another CA signed, naming the server and the CA', async () => {
    const wrong = await refusal(
      connectNats({ url: nats.url, name: 't', tls: { ca: pki.otherCa, ...pki.client }, extra: once }),
    );
    expect(wrong.code).toBe(Code.UNAVAILABLE);
    expect(wrong.message).toMatch(
      new RegExp(
        `^cannot connect to NATS at nats://127\\.0\\.0\\.1:${nats.port} over TLS: the server's certificate is not signed by the CA in ${pki.otherCa} \\(`,
      ),
    );
    // Verification is on without a CA too: the system's CAs do not know the test CA.
    const system = await refusal(
      connectNats({ url: nats.url, name: 't', tls: { ...pki.client }, extra: once }),
    );
    expect(system.message).toMatch(/over TLS: the server's certificate is not signed by the system's CAs \(/);
  });

  it('is refused by a server that wants a client certificate when none is given', async () => {
    const err = await refusal(
      connectNats({ url: nats.url, name: 't', tls: { ca: pki.ca }, extra: { ...once, timeout: 3000 } }),
    );
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toBe(
      `cannot connect to NATS at nats://127.0.0.1:${nats.port} over TLS: the server did not answer after the TLS handshake: does it want a client certificate (cert and key)?`,
    );
  });

  it('names an unreadable TLS file', async () => {
    const missing = join(pki.dir, 'nope.pem');
    const err = await refusal(connectNats({ url: nats.url, name: 't', tls: { ca: missing }, extra: once }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toMatch(new RegExp(`^NATS TLS CA file ${missing} cannot be read: `));
  });
});

describe('Redis over TLS', () => {
  it('connects to rediss:// with the CA and a client certificate', async () => {
    const r = await openRedis(redis.url, undefined, { tls: { ca: pki.ca, ...pki.client } });
    try {
      await r.set('berth:v1:test:tls', 'secret');
      expect(await r.get('berth:v1:test:tls')).toBe('secret');
    } finally {
      r.disconnect();
    }
  });

  it('refuses a wrong CA with UNAVAILABLE naming the server, and redisTls with a plain URL', async () => {
    const wrong = await refusal(openRedis(redis.url, undefined, { tls: { ca: pki.otherCa, ...pki.client } }));
    expect(wrong.code).toBe(Code.UNAVAILABLE);
    expect(wrong.message).toMatch(
      new RegExp(
        `^cannot connect to Redis at rediss://127\\.0\\.0\\.1:${redis.port} over TLS: the server's certificate is not signed by the CA in ${pki.otherCa} \\(`,
      ),
    );
    const system = await refusal(openRedis(redis.url, undefined, {}));
    expect(system.message).toMatch(/over TLS: the server's certificate is not signed by the system's CAs \(/);
    const plain = redis.url.replace('rediss://', 'redis://');
    const mixed = await refusal(openRedis(plain, undefined, { tls: { ca: pki.ca } }));
    expect(mixed.code).toBe(Code.INVALID_ARGUMENT);
    expect(mixed.message).toBe(`redisTls is set but the Redis URL ${plain} is not TLS: write rediss://`);
  });
});

describe('a service over TLS end to end', () => {
  let client: NatsConnection;
  beforeAll(async () => {
    client = await connectNats({ url: nats.url, name: 'kit-tls-client', tls: { ca: pki.ca, ...pki.client } });
  });
  afterAll(async () => {
    await client?.close();
  });

  it('serves calls over TLS NATS and keeps its records in TLS Redis', async () => {
    const tls = { ca: pki.ca, ...pki.client };
    const child = await startTestService({
      natsUrl: nats.url,
      redisUrl: redis.url,
      config: { natsTls: tls, redisTls: tls },
    });
    try {
      const node = child.nodeId;
      expect((await call(client, TestApi, 'echo', { text: 'hi' }, { node })).text).toBe('hi');
      await call(client, TestApi, 'put', { key: 'e2e', value: 'kept' });
      expect(await call(client, TestApi, 'get', { key: 'e2e' })).toEqual({ value: 'kept' });
    } finally {
      await child.stop();
    }
  });

  it('refuses to start with a CA that did not sign the server, in one line naming the server', async () => {
    const child = await startTestService({
      natsUrl: nats.url,
      redisUrl: redis.url,
      config: { natsTls: { ca: pki.otherCa, ...pki.client }, redisTls: { ca: pki.ca, ...pki.client } },
      waitReady: false,
    });
    try {
      expect(await child.exited).toBe(1);
      expect(child.output()).toContain(
        `task-service: start-up failed: cannot connect to NATS at nats://127.0.0.1:${nats.port} over TLS: the server's certificate is not signed by the CA in ${pki.otherCa}`,
      );
    } finally {
      await child.stop();
    }
  });
});

describe('Redis transport settings', () => {
  const sentinel = { name: 'berth', sentinels: [{ host: '127.0.0.1', port: 26379 }] };
  it('wants the master group as the host of the Redis URL under Sentinel', async () => {
    const err = await refusal(openRedis('redis://u:pw@127.0.0.1:6379', undefined, { sentinel }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe(
      'with redisSentinel, the Redis URL names the master group: redis://[user:password@]berth[/db], not redis://***@127.0.0.1:6379',
    );
  });
  it('refuses TLS or Sentinel for a unix socket', async () => {
    const err = await refusal(openRedis('/run/redis.sock', undefined, { sentinel }));
    expect(err.message).toBe('Redis at unix socket /run/redis.sock takes neither redisTls nor redisSentinel');
  });
});

describe('TLS settings', () => {
  it('refuses a certificate without its key, naming the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-kit-tls-'));
    try {
      const file = join(dir, 'config.json');
      await writeFile(file, JSON.stringify({ redisTls: { ca: '/ca.pem', cert: '/c.pem' } }));
      expect(() => loadConfig({ BERTH_CONFIG: file })).toThrow(
        `invalid config "redisTls" (from config file ${file}): a TLS client certificate needs its key, and a key its certificate (cert and key)`,
      );
      await writeFile(file, JSON.stringify({ natsTls: { ca: 'ca.pem' } }));
      expect(() => loadConfig({ BERTH_CONFIG: file })).toThrow(
        `invalid config "natsTls.ca" (from config file ${file}): TLS CA file must be an absolute path`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
