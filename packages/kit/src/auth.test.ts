import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNats, startRedis } from '@berth/testing';
import { connect, type NatsConnection, nkeys } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { connectNats, parseNatsUrl } from './nats.js';
import { redactUrl } from './redact.js';
import { connectRedis, Redis } from './redis.js';
import { startTestService } from './testdata/child.js';
import { TestApi } from './testdata/test-api.mjs';

// Servers that require credentials: the kit takes them from the URLs and never logs them.

const secret = () => randomBytes(24).toString('base64url');

describe('parseNatsUrl', () => {
  it('takes user:pass or a token out of the URLs and leaves bare servers', () => {
    expect(parseNatsUrl('nats://berth:p%40ss@127.0.0.1:4222')).toEqual({
      servers: ['nats://127.0.0.1:4222'],
      user: 'berth',
      pass: 'p@ss',
    });
    expect(parseNatsUrl('nats://tok@h1:4222, nats://tok@h2:4222')).toEqual({
      servers: ['nats://h1:4222', 'nats://h2:4222'],
      token: 'tok',
    });
    expect(parseNatsUrl('127.0.0.1:4222')).toEqual({ servers: ['127.0.0.1:4222'] });
  });
});

describe('redactUrl', () => {
  it('hides userinfo in every URL of a list and leaves the rest', () => {
    expect(redactUrl('nats://berth:pw@127.0.0.1:4222')).toBe('nats://***@127.0.0.1:4222');
    expect(redactUrl('redis://:pw@127.0.0.1:6379/2')).toBe('redis://***@127.0.0.1:6379/2');
    expect(redactUrl('nats://tok@a:1,nats://b:2')).toBe('nats://***@a:1,nats://b:2');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactUrl('/run/redis.sock')).toBe('/run/redis.sock');
  });
});

describe('against servers that require authentication', () => {
  const password = secret();
  const token = secret();
  const redisPassword = secret();
  let natsUser: Awaited<ReturnType<typeof startNats>>;
  let natsToken: Awaited<ReturnType<typeof startNats>>;
  let redis: Awaited<ReturnType<typeof startRedis>>;

  beforeAll(async () => {
    [natsUser, natsToken, redis] = await Promise.all([
      startNats({ jetstream: false, auth: { user: 'berth', password } }),
      startNats({ jetstream: false, auth: { token } }),
      startRedis({ appendonly: false, password: redisPassword }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([natsUser?.stop(), natsToken?.stop(), redis?.stop()]);
  });

  const once = { waitOnFirstConnect: false, maxReconnectAttempts: 0 } as const;

  it('connectNats logs in with user:pass and with a token from the URL', async () => {
    expect(natsUser.url).toBe(`nats://berth:${password}@127.0.0.1:${natsUser.port}`);
    for (const url of [natsUser.url, natsToken.url]) {
      const nc = await connectNats({ url, name: 'kit-auth-test', extra: once });
      try {
        await nc.flush();
        expect(nc.isClosed()).toBe(false);
        // nats.js reports the server it uses; the secret must not be part of it.
        expect(nc.getServer()).not.toContain('@');
      } finally {
        await nc.close();
      }
    }
  });

  it('a client without credentials, or with wrong ones, is refused', async () => {
    const bare = `nats://127.0.0.1:${natsUser.port}`;
    await expect(connect({ servers: bare, ...once })).rejects.toMatchObject({
      code: 'AUTHORIZATION_VIOLATION',
    });
    await expect(
      connectNats({ url: `nats://berth:wrong@127.0.0.1:${natsUser.port}`, name: 't', extra: once }),
    ).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
    await expect(
      connectNats({ url: `nats://wrong@127.0.0.1:${natsToken.port}`, name: 't', extra: once }),
    ).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
  });

  it('connectRedis authenticates from redis://:password@, and a bare client gets NOAUTH', async () => {
    const ok = connectRedis(redis.url);
    try {
      await ok.connect();
      expect(await ok.set('berth:v1:test:auth', '1')).toBe('OK');
    } finally {
      ok.disconnect();
    }
    // No ready check: it would fail on NOAUTH before the command the test wants to see refused.
    const bare = new Redis({
      host: '127.0.0.1',
      port: redis.port,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
    });
    bare.on('error', () => undefined);
    try {
      await bare.connect();
      await expect(bare.get('berth:v1:test:auth')).rejects.toThrow(/NOAUTH/);
    } finally {
      bare.disconnect();
    }
  });

  it('a service started with credential URLs serves, and its log never shows the secrets', async () => {
    const child = await startTestService({ natsUrl: natsUser.url, redisUrl: redis.url });
    let nc: NatsConnection | undefined;
    try {
      nc = await connectNats({ url: natsUser.url, name: 'kit-auth-test' });
      const info = await call(nc, TestApi, 'info', {}, { timeoutMs: 5000 });
      expect(info.healthy).toBe(true);
      const ready = await child.waitForLog((l) => l.msg === 'task-service ready');
      expect(ready.nats).toBe(`nats://***@127.0.0.1:${natsUser.port}`);
      expect(ready.redis).toBe(`redis://***@127.0.0.1:${redis.port}`);
      // A nats-server restart makes the child log reconnect status lines too.
      const mark = child.mark();
      await natsUser.restart();
      await child.waitForLog((l) => l.nats === 'reconnect', { from: mark });
      expect(child.output()).not.toContain(password);
      expect(child.output()).not.toContain(redisPassword);
    } finally {
      await nc?.close();
      await child.stop();
    }
  });
});

/** Minimal NATS JWT (ed25519-nkey) signed by `issuer`: what `nsc` makes, for a test server. */
function natsJwt(
  issuer: { getPublicKey(): string; sign(d: Uint8Array): Uint8Array },
  sub: string,
  nats: Record<string, unknown>,
): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = {
    jti: randomBytes(16).toString('hex'),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name: 'berth-test',
    sub,
    nats: { ...nats, version: 2 },
  };
  const data = `${b64({ typ: 'JWT', alg: 'ed25519-nkey' })}.${b64(claims)}`;
  return `${data}.${Buffer.from(issuer.sign(new TextEncoder().encode(data))).toString('base64url')}`;
}

describe('with a NATS user credentials file (JWT authentication)', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  let dir: string;
  let credsFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-kit-creds-'));
    const operator = nkeys.createOperator();
    const account = nkeys.createAccount();
    const user = nkeys.createUser();
    const unlimited = { subs: -1, data: -1, payload: -1 };
    const operatorJwt = natsJwt(operator, operator.getPublicKey(), { type: 'operator' });
    const accountJwt = natsJwt(operator, account.getPublicKey(), {
      type: 'account',
      limits: { ...unlimited, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
    });
    const userJwt = natsJwt(account, user.getPublicKey(), { type: 'user', ...unlimited });
    writeFileSync(join(dir, 'operator.jwt'), operatorJwt);
    credsFile = join(dir, 'user.creds');
    const seed = new TextDecoder().decode(user.getSeed());
    writeFileSync(
      credsFile,
      `-----BEGIN NATS USER JWT-----\n${userJwt}\n------END NATS USER JWT------\n\n` +
        `-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`,
      { mode: 0o600 },
    );
    [nats, redis] = await Promise.all([
      startNats({
        jetstream: false,
        config:
          `operator: ${JSON.stringify(join(dir, 'operator.jwt'))}\nresolver: MEMORY\n` +
          `resolver_preload: { ${account.getPublicKey()}: ${JSON.stringify(accountJwt)} }`,
      }),
      startRedis({ appendonly: false }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([nats?.stop(), redis?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const once = { waitOnFirstConnect: false, maxReconnectAttempts: 0 } as const;

  it('connectNats logs in with creds; without them the server refuses', async () => {
    await expect(connect({ servers: nats.url, ...once })).rejects.toMatchObject({
      code: 'AUTHORIZATION_VIOLATION',
    });
    const nc = await connectNats({ url: nats.url, name: 'kit-creds-test', creds: credsFile, extra: once });
    await nc.flush();
    await nc.close();
  });

  it('a missing credentials file fails with a line naming it', async () => {
    const missing = join(dir, 'nope.creds');
    await expect(connectNats({ url: nats.url, name: 't', creds: missing, extra: once })).rejects.toThrow(
      `NATS credentials file ${missing} cannot be read`,
    );
  });

  it('a service with BERTH_NATS_CREDS serves', async () => {
    const child = await startTestService({
      natsUrl: nats.url,
      redisUrl: redis.url,
      env: { BERTH_NATS_CREDS: credsFile },
    });
    let nc: NatsConnection | undefined;
    try {
      nc = await connectNats({ url: nats.url, name: 'kit-creds-test', creds: credsFile });
      const info = await call(nc, TestApi, 'info', {}, { timeoutMs: 5000 });
      expect(info.healthy).toBe(true);
    } finally {
      await nc?.close();
      await child.stop();
    }
  });
});
