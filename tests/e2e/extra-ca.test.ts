// The `berth` launcher (packages/cli/bin/berth) starts Node without NODE_EXTRA_CA_CERTS, which
// Node 20 would parse before any JavaScript runs. A user who needs those CAs must see no
// difference: the CLI's own TLS connections trust them (a NATS server whose CA is given only
// through the variable), and every process `berth up` starts gets the variable back.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNats } from '@berth/kit';
import { makeTestPki, startNats, startRedis, type TestPki, type TestServer } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type IsolatedEnv,
  isolatedEnv,
  type RunningImageService,
  removeIsolatedEnv,
  runBerth,
  startImageService,
} from '../harness/index.js';
import { type Stack, startStack } from '../harness/stack.js';

let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
});
afterAll(async () => {
  await pki?.remove();
});

/** A process's environment, from /proc (the variables a process started with). */
function environOf(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0) out.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return out;
}

describe('berth through its launcher, on a TLS NATS whose CA only NODE_EXTRA_CA_CERTS names', () => {
  let nats: TestServer;
  let redis: TestServer;
  let inst: IsolatedEnv;
  let svc: RunningImageService;
  let nc: NatsConnection;
  /** A config file whose CLI asks for TLS (natsTls without a CA of its own). */
  let tlsConfig: string;

  beforeAll(async () => {
    [nats, redis] = await Promise.all([startNats({ tls: { ca: pki.ca, ...pki.server } }), startRedis()]);
    // No natsTls: nats.js upgrades to TLS because the server requires it, trusting Node's
    // default CAs, which NODE_EXTRA_CA_CERTS extends.
    inst = await isolatedEnv({ config: { natsUrl: nats.url, redisUrl: redis.url } });
    tlsConfig = join(inst.root, 'config-tls.json');
    const config = JSON.parse(readFileSync(inst.configFile, 'utf8')) as Record<string, unknown>;
    writeFileSync(tlsConfig, JSON.stringify({ ...config, natsTls: {} }));
    nc = await connectNats({ url: nats.url, name: 'e2e-extra-ca', tls: { ca: pki.ca } });
    // The service is a plain node process: Node itself loads the variable.
    svc = await startImageService(inst, nc, { NODE_EXTRA_CA_CERTS: pki.ca });
  });
  afterAll(async () => {
    await svc?.stop();
    await nc?.close();
    await Promise.all([nats?.stop(), redis?.stop()]);
    await removeIsolatedEnv(inst);
  });

  const images = (env: NodeJS.ProcessEnv, launcher = true) =>
    runBerth(['images'], { env: { ...inst.env, ...env }, launcher });

  it('lists images when NATS upgrades the connection to TLS', async () => {
    const r = await images({ NODE_EXTRA_CA_CERTS: pki.ca });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID/);
  });

  it('lists images when the config asks for TLS without a CA of its own', async () => {
    const r = await images({ NODE_EXTRA_CA_CERTS: pki.ca, BERTH_CONFIG: tlsConfig });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID/);
  });

  it('is refused without the variable, or with another CA in it, as node alone is', async () => {
    const { NODE_EXTRA_CA_CERTS: _, ...bare } = inst.env;
    for (const [env, launcher] of [
      [{ NODE_EXTRA_CA_CERTS: pki.otherCa }, true],
      [{ NODE_EXTRA_CA_CERTS: pki.otherCa }, false],
      [{ BERTH_CONFIG: tlsConfig }, true],
    ] as const) {
      const r = await runBerth(['images'], { env: { ...bare, ...env }, launcher });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        /^berth: cannot connect to NATS at .* over TLS: the server's certificate is not signed by the system's CAs/,
      );
    }
    // And node on berth.js, where Node loads the variable itself, lists them.
    const direct = await images({ NODE_EXTRA_CA_CERTS: pki.ca }, false);
    expect(direct.code, direct.stderr).toBe(0);
  });
});

describe('berth up through the launcher', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({ env: { NODE_EXTRA_CA_CERTS: pki.ca }, upLauncher: true });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
  }, 60_000);

  it('gives the supervisor, the services and the embedded servers NODE_EXTRA_CA_CERTS back', async () => {
    const st = stack.state();
    expect(st).toBeDefined();
    // redis-server writes its process title over its environment block, so /proc shows none.
    const children = (st?.children ?? []).filter((c) => c.name !== 'redis-server');
    expect(children.map((c) => c.name)).toEqual(
      expect.arrayContaining(['image-service', 'nats-server', 'shim', 'snapshot-service', 'task-service']),
    );
    const pids = [st?.pid, ...children.map((c) => c.pid)];
    for (const pid of pids) {
      expect(pid).toBeTypeOf('number');
      const env = environOf(pid as number);
      expect(env.get('NODE_EXTRA_CA_CERTS'), `pid ${pid}`).toBe(pki.ca);
      expect(env.has('BERTH_EXTRA_CA_CERTS'), `pid ${pid}`).toBe(false);
    }
  });
});
