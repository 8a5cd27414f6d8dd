import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connectNats } from '@berth/kit';
import { startNats, startRedis } from '@berth/testing';
import { Redis } from 'ioredis';
import { connect } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startJwtNats } from '../harness/nats-jwt.js';
import { type Stack, startStack } from '../harness/stack.js';

// The embedded nats-server and redis-server listen on loopback, which every local user can reach:
// they must require credentials that only berth (and root) can read.

interface Credentials {
  nats: { user: string; password: string };
  redis: { password: string };
}

describe('berth up: the embedded servers require credentials', () => {
  let stack: Stack;
  let creds: Credentials;
  let natsPort: number;
  let redisPort: number;

  beforeAll(async () => {
    stack = await startStack();
    const file = join(stack.stateRoot, 'embedded', 'credentials.json');
    creds = JSON.parse(readFileSync(file, 'utf8')) as Credentials;
    natsPort = Number(new URL(stack.natsUrl).port);
    redisPort = Number(new URL(stack.redisUrl).port);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const secrets = () => [creds.nats.password, creds.redis.password];
  const once = { waitOnFirstConnect: false, maxReconnectAttempts: 0 } as const;

  it('refuses a NATS client without credentials or with wrong ones', async () => {
    await expect(connect({ servers: `nats://127.0.0.1:${natsPort}`, ...once })).rejects.toMatchObject({
      code: 'AUTHORIZATION_VIOLATION',
    });
    await expect(
      connectNats({ url: `nats://berth:wrong@127.0.0.1:${natsPort}`, name: 'e2e-intruder', extra: once }),
    ).rejects.toMatchObject({ code: 'AUTHORIZATION_VIOLATION' });
    // The right ones work.
    const nc = await connectNats({ url: stack.natsUrl, name: 'e2e-auth', extra: once });
    await nc.flush();
    await nc.close();
  });

  it('refuses Redis commands without the password or with a wrong one', async () => {
    const bare = new Redis({
      host: '127.0.0.1',
      port: redisPort,
      lazyConnect: true,
      enableReadyCheck: false,
      retryStrategy: () => null,
    });
    bare.on('error', () => undefined);
    try {
      await bare.connect();
      await expect(bare.set('berth-e2e:intruder', 'x')).rejects.toThrow(/NOAUTH/);
      await expect(bare.auth('wrong')).rejects.toThrow(/WRONGPASS/);
      await expect(bare.keys('*')).rejects.toThrow(/NOAUTH/);
    } finally {
      bare.disconnect();
    }
  });

  it('runs every service with them: berth status is healthy and hides the secrets', async () => {
    const { code, json } = await stack.status();
    expect(code).toBe(0);
    expect(json.ok).toBe(true);
    expect(json.services.every((s) => s.found === 1)).toBe(true);
    expect(json.natsUrl).toBe(`nats://***@127.0.0.1:${natsPort}`);
    expect(json.supervisor?.redisUrl).toBe(`redis://***@127.0.0.1:${redisPort}`);
    const text = await stack.berth('status');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(
      `NATS nats://***@127.0.0.1:${natsPort}, Redis redis://***@127.0.0.1:${redisPort}`,
    );
    expect(stack.upResult.stdout).toContain(`NATS nats://***@127.0.0.1:${natsPort} (embedded)`);
    const again = await stack.berth('up');
    for (const out of [
      JSON.stringify(json),
      text.stdout,
      text.stderr,
      stack.upResult.stdout,
      stack.upResult.stderr,
      again.stdout,
    ]) {
      for (const s of secrets()) expect(out).not.toContain(s);
    }
  });

  it('keeps the secrets in 0600 files in a 0700 directory under the state root', () => {
    const dir = join(stack.stateRoot, 'embedded');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of ['credentials.json', 'nats-server.conf', 'redis-server.conf']) {
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
    }
    expect(creds.nats.password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(stack.natsUrl).toBe(`nats://berth:${creds.nats.password}@127.0.0.1:${natsPort}`);
    expect(stack.redisUrl).toBe(`redis://:${creds.redis.password}@127.0.0.1:${redisPort}`);
    // The state file carrying the URLs is private too.
    expect(statSync(join(stack.runRoot, 'supervisor.json')).mode & 0o777).toBe(0o600);
  });

  it('puts no secret on a command line (what ps shows every user); environments stay private', () => {
    const st = stack.state()!;
    const pids = [st.pid, ...st.children.map((c) => c.pid as number)];
    expect(st.children.map((c) => c.name).sort()).toEqual(
      [
        'cri-gateway',
        'image-service',
        'nats-server',
        'redis-server',
        'shim',
        'snapshot-service',
        'task-service',
      ].sort(),
    );
    for (const pid of pids) {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      expect(cmdline.length, `pid ${pid} runs`).toBeGreaterThan(0);
      for (const s of secrets()) expect(cmdline, `cmdline of pid ${pid}`).not.toContain(s);
      // The environment (which does carry the URLs for the services) is readable by its owner only.
      expect(statSync(`/proc/${pid}/environ`).mode & 0o077, `environ of pid ${pid}`).toBe(0);
    }
    const ps = spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
    expect(ps.status).toBe(0);
    expect(ps.stdout).toContain(String(st.pid));
    for (const s of secrets()) expect(ps.stdout).not.toContain(s);
    // The services do get their own logins (not the administrator's), through their environment.
    const svc = st.children.find((c) => c.name === 'image-service')!;
    const environ = readFileSync(`/proc/${svc.pid}/environ`, 'utf8').split('\0');
    expect(environ).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^BERTH_NATS_URL=nats://image-service\\.${stack.nodeId}:[\\w-]{43}@127\\.0\\.0\\.1:${natsPort}$`,
        ),
      ),
    );
    expect(environ).not.toContain(`BERTH_NATS_URL=${stack.natsUrl}`);
  });

  it('writes no secret to any log', () => {
    const logs = join(stack.stateRoot, 'services');
    const files = readdirSync(logs).filter((f) => f.endsWith('.log'));
    expect(files).toEqual(expect.arrayContaining(['supervisor.log', 'image-service.log', 'nats-server.log']));
    for (const f of files) {
      const text = readFileSync(join(logs, f), 'utf8');
      for (const s of secrets()) expect(text, f).not.toContain(s);
    }
    const ready = readFileSync(join(logs, 'image-service.log'), 'utf8');
    expect(ready).toContain(`"nats":"nats://***@127.0.0.1:${natsPort}"`);
  });

  it('reuses the credentials after berth down and up, and the Redis data (AOF) is still readable', async () => {
    const before = stack.natsUrl;
    const redis = new Redis(stack.redisUrl, { lazyConnect: true });
    await redis.connect();
    await redis.set('berth-e2e:auth-survives', 'yes');
    redis.disconnect();
    const down = await stack.berth('down');
    expect(down.code).toBe(0);
    const up = await stack.berth('up');
    expect(up.code, up.stderr).toBe(0);
    const st = stack.state()!;
    expect(st.natsUrl).toBe(before);
    expect(JSON.parse(readFileSync(join(stack.stateRoot, 'embedded', 'credentials.json'), 'utf8'))).toEqual(
      creds,
    );
    const again = new Redis(st.redisUrl, { lazyConnect: true });
    try {
      await again.connect();
      expect(await again.get('berth-e2e:auth-survives')).toBe('yes');
    } finally {
      again.disconnect();
    }
    const { code, json } = await stack.status();
    expect(code).toBe(0);
    expect(json.ok).toBe(true);
  });
});

describe('berth up with external servers that require credentials', () => {
  it('passes the configured URLs through unchanged: a NATS token and a Redis password work', async () => {
    const token = randomBytes(24).toString('base64url');
    const password = randomBytes(24).toString('base64url');
    const [nats, redis] = await Promise.all([
      startNats({ jetstream: false, auth: { token } }),
      startRedis({ appendonly: false, password }),
    ]);
    try {
      expect(nats.url).toBe(`nats://${token}@127.0.0.1:${nats.port}`);
      const stack = await startStack({ natsUrl: nats.url, redisUrl: redis.url });
      try {
        const st = stack.state()!;
        expect(st.embedded).toBe(false);
        expect([st.natsUrl, st.redisUrl]).toEqual([nats.url, redis.url]);
        const { code, json } = await stack.status();
        expect(code).toBe(0);
        expect(json.ok).toBe(true);
        expect(json.natsUrl).toBe(`nats://***@127.0.0.1:${nats.port}`);
        const logs = join(stack.stateRoot, 'services');
        for (const f of readdirSync(logs)) {
          const text = readFileSync(join(logs, f), 'utf8');
          for (const s of [token, password]) expect(text, f).not.toContain(s);
        }
        for (const s of [token, password])
          expect(stack.upResult.stdout + JSON.stringify(json)).not.toContain(s);
      } finally {
        await stack.stop();
      }
    } finally {
      await Promise.all([nats.stop(), redis.stop()]);
    }
  });
});

describe('berth up with an external NATS that wants a credentials file', () => {
  it('services and CLI log in with BERTH_NATS_CREDS', async () => {
    const [nats, redis] = await Promise.all([startJwtNats(), startRedis({ appendonly: false })]);
    try {
      const once = { waitOnFirstConnect: false, maxReconnectAttempts: 0 } as const;
      await expect(connect({ servers: nats.url, ...once })).rejects.toMatchObject({
        code: 'AUTHORIZATION_VIOLATION',
      });
      const stack = await startStack({
        natsUrl: nats.url,
        redisUrl: redis.url,
        env: { BERTH_NATS_CREDS: nats.credsFile },
      });
      try {
        const { code, json } = await stack.status();
        expect(code).toBe(0);
        expect(json.ok).toBe(true);
        expect(json.services.every((s) => s.found === 1)).toBe(true);
      } finally {
        await stack.stop();
      }
    } finally {
      await Promise.all([nats.stop(), redis.stop()]);
    }
  });
});
