import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Code } from '@berth/api';
import { loadConfig } from '@berth/kit';
import { afterEach, describe, expect, it } from 'vitest';
import { embeddedPorts, makePlan, parseReplicas, supervisorMain } from './plan.js';

const dirs: string[] = [];
function configEnv(file: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const dir = mkdtempSync(join(tmpdir(), 'berth-plan-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(file));
  return {
    BERTH_CONFIG: join(dir, 'config.json'),
    BERTH_STATE_ROOT: join(dir, 'state'),
    BERTH_RUN_ROOT: join(dir, 'run'),
    BERTH_NODE_ID: 'n1',
    ...env,
  };
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('parseReplicas', () => {
  it('reads repeated and comma-separated SERVICE=N', () => {
    expect(parseReplicas(['image-service=2,task-service=3', 'snapshot-service=1'])).toEqual({
      'image-service': 2,
      'task-service': 3,
      'snapshot-service': 1,
    });
  });

  it.each([
    ['shim=2', '"shim" runs once per host and cannot have replicas'],
    ['cri-gateway=2', '"cri-gateway" runs once per host and cannot have replicas'],
    ['nope=2', 'unknown service "nope"'],
    ['image-service=0', 'must be a whole number from 1 to 16'],
    ['image-service=17', 'must be a whole number from 1 to 16'],
    ['image-service', 'expected SERVICE=N'],
  ])('refuses %s', (arg, msg) => {
    expect(() => parseReplicas([arg])).toThrow(msg);
    try {
      parseReplicas([arg]);
    } catch (err) {
      expect((err as { code: string }).code).toBe(Code.INVALID_ARGUMENT);
    }
  });
});

describe('makePlan', () => {
  it('embeds NATS and Redis on the default ports when no URL is configured', () => {
    const env = configEnv({});
    const plan = makePlan(loadConfig(env), {}, env);
    // The URLs carry the generated credentials, which the embedded servers will require.
    const creds = JSON.parse(
      readFileSync(join(env.BERTH_STATE_ROOT as string, 'embedded', 'credentials.json'), 'utf8'),
    ) as { nats: { user: string; password: string }; redis: { password: string } };
    expect(plan.natsUrl).toBe(`nats://berth:${creds.nats.password}@127.0.0.1:4222`);
    expect(plan.redisUrl).toBe(`redis://:${creds.redis.password}@127.0.0.1:6379`);
    expect(plan.embedded.map((e) => e.auth)).toEqual([
      { user: 'berth', password: creds.nats.password },
      { password: creds.redis.password },
    ]);
    // A second plan reuses them.
    expect(makePlan(loadConfig(env), {}, env).natsUrl).toBe(plan.natsUrl);
    // Each service and the CLI log in as themselves, with passwords of their own (derived, stable).
    const node = plan.nodeId;
    const task = new URL(plan.logins?.['task-service']?.natsUrl ?? '');
    expect([task.username, task.host]).toEqual([`task-service.${node}`, '127.0.0.1:4222']);
    expect(new URL(plan.logins?.shim?.redisUrl ?? '').username).toBe(`shim.${node}`);
    expect(new URL(plan.logins?.cli?.natsUrl ?? '').username).toBe(`cli.${node}`);
    expect(plan.logins?.cli?.redisUrl).toBeUndefined();
    const passwords = Object.values(plan.logins ?? {}).flatMap((l) => [new URL(l.natsUrl).password]);
    expect(new Set(passwords).size).toBe(6);
    expect(passwords).not.toContain(creds.nats.password);
    expect(makePlan(loadConfig(env), {}, env).logins).toEqual(plan.logins);
    expect(plan.embedded.every((e) => e.users?.node === node)).toBe(true);
    expect(plan.embedded.map((e) => [e.kind, e.port, e.dataDir])).toEqual([
      ['nats-server', 4222, join(env.BERTH_STATE_ROOT as string, 'embedded', 'nats')],
      ['redis-server', 6379, join(env.BERTH_STATE_ROOT as string, 'embedded', 'redis')],
    ]);
    expect(plan.services.map((s) => s.service)).toEqual([
      'shim',
      'snapshot-service',
      'image-service',
      'task-service',
      'cri-gateway',
    ]);
    expect(plan.services[0]?.logFile).toBe(join(env.BERTH_STATE_ROOT as string, 'services', 'shim.log'));
  });

  it('embeds only what has no URL', () => {
    const env = configEnv({}, { BERTH_NATS_URL: 'nats://10.0.0.1:4222' });
    const plan = makePlan(loadConfig(env), {}, env);
    expect(plan.natsUrl).toBe('nats://10.0.0.1:4222');
    expect(plan.redisUrl).toMatch(/^redis:\/\/:[A-Za-z0-9_-]{43}@127\.0\.0\.1:6379$/);
    expect(plan.embedded.map((e) => e.kind)).toEqual(['redis-server']);
    // The configured NATS is everyone's; the embedded Redis still has a user per service.
    expect(plan.logins?.['image-service']?.natsUrl).toBe('nats://10.0.0.1:4222');
    expect(new URL(plan.logins?.['image-service']?.redisUrl ?? '').username).toBe(
      `image-service.${plan.nodeId}`,
    );
    const both = configEnv({ natsUrl: 'nats://u:p@a:1', redisUrl: 'redis://:p@b:2' });
    const external = makePlan(loadConfig(both), {}, both);
    expect(external.embedded).toEqual([]);
    // Configured URLs pass through unchanged, and nothing is generated for them.
    expect([external.natsUrl, external.redisUrl]).toEqual(['nats://u:p@a:1', 'redis://:p@b:2']);
    expect(existsSync(join(both.BERTH_STATE_ROOT as string, 'embedded'))).toBe(false);
    expect(external.logins).toBeUndefined();
  });

  it('refuses a NATS credentials file without a NATS URL: the embedded NATS has its own', () => {
    const env = configEnv({}, { BERTH_NATS_CREDS: '/etc/berth/nats.creds' });
    expect(() => makePlan(loadConfig(env), {}, env)).toThrow(
      'natsCreds (/etc/berth/nats.creds) is set but natsUrl is not',
    );
    const ok = configEnv({ natsUrl: 'nats://n:1' }, { BERTH_NATS_CREDS: '/etc/berth/nats.creds' });
    expect(makePlan(loadConfig(ok), {}, ok).natsUrl).toBe('nats://n:1');
  });

  it('refuses TLS or Sentinel settings for the embedded servers, which serve plain loopback', () => {
    const tls = { ca: '/etc/berth/tls/ca.pem' };
    const nats = configEnv({ natsTls: tls });
    expect(() => makePlan(loadConfig(nats), {}, nats)).toThrow(
      'natsTls is set but natsUrl is not: it is for configured servers (docs/operations.md); the embedded ones serve plain TCP on loopback',
    );
    const sentinel = configEnv({ redisSentinel: { name: 'berth', sentinels: [{ host: 'h', port: 26379 }] } });
    expect(() => makePlan(loadConfig(sentinel), {}, sentinel)).toThrow(
      /^redisSentinel is set but redisUrl is not/,
    );
    const ok = configEnv({ natsUrl: 'nats://n:1', natsTls: tls, redisUrl: 'rediss://r:1', redisTls: tls });
    expect(makePlan(loadConfig(ok), {}, ok).embedded).toEqual([]);
  });

  it('takes embedded ports from config, and from the environment over config', () => {
    const env = configEnv({ embedded: { natsPort: 14222, redisPort: 16379 } });
    expect(embeddedPorts(env)).toEqual({ natsPort: 14222, redisPort: 16379, natsMonitorPort: -1 });
    expect(embeddedPorts(configEnv({ embedded: { natsMonitorPort: 18222 } })).natsMonitorPort).toBe(18222);
    expect(embeddedPorts({ ...env, BERTH_EMBEDDED_NATS_MONITOR_PORT: '0' }).natsMonitorPort).toBe(0);
    expect(embeddedPorts({ ...env, BERTH_EMBEDDED_NATS_PORT: '24222' })).toEqual({
      natsPort: 24222,
      redisPort: 16379,
      natsMonitorPort: -1,
    });
    expect(() => embeddedPorts({ ...env, BERTH_EMBEDDED_REDIS_PORT: 'x' })).toThrow(
      'invalid BERTH_EMBEDDED_REDIS_PORT "x"',
    );
    const bad = configEnv({ embedded: { natsPort: 70000 } });
    expect(() => embeddedPorts(bad)).toThrow('invalid config "embedded.natsPort"');
  });

  it('runs replicas from config, the command line winning, each with a numbered log', () => {
    const env = configEnv({
      services: { 'image-service': { replicas: 3 }, 'task-service': { replicas: 2 } },
    });
    const plan = makePlan(loadConfig(env), { 'image-service': 2 }, env);
    const images = plan.services.filter((s) => s.service === 'image-service');
    expect(images.map((s) => s.replica)).toEqual([1, 2]);
    expect(images.map((s) => s.logFile.split('/').pop())).toEqual([
      'image-service-1.log',
      'image-service-2.log',
    ]);
    expect(plan.services.filter((s) => s.service === 'task-service')).toHaveLength(2);
  });

  it('refuses replicas of the shim in config', () => {
    const env = configEnv({ services: { shim: { replicas: 2 } } });
    expect(() => makePlan(loadConfig(env), {}, env)).toThrow(
      'config "services.shim.replicas": "shim" runs once per host and cannot have replicas',
    );
  });
});

describe('supervisorMain', () => {
  it('is the compiled supervisor-main.js with bundles off, else a file named supervisor-main', () => {
    expect(supervisorMain({ BERTH_SERVICE_BUNDLES: '0' })).toMatch(
      /\/packages\/cli\/dist\/stack\/supervisor-main\.js$/,
    );
    // Bundle or compiled module, depending on the build: either is what cleanup.ts recognises.
    expect(basename(supervisorMain({}))).toMatch(/^supervisor-main\.m?js$/);
  });
});
