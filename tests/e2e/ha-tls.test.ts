// A real berth service and the real CLI across machines, on loopback: the image-service and
// `berth` talk TLS to a three-server NATS cluster and to Redis under Sentinel (TLS too), with a
// CA made for this run. The NATS server the image-service uses is SIGKILLed, then the Redis
// primary; the image pulled before both is still listed, and pulls go on.
import { busyboxTar, makeImage, makeLayer, uploadImage } from '@berth/image-service/testing';
import { connectNats, keys } from '@berth/kit';
import {
  makeTestPki,
  type NatsCluster,
  type RedisSentinelSet,
  startNatsCluster,
  startRedisSentinel,
  startRegistry,
  type TestPki,
  type TestServer,
} from '@berth/testing';
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
import { until } from './containers-stack.js';

const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const img = makeImage([makeLayer(busyboxTar(), 'gzip')], { arch });
let pki: TestPki;
let cluster: NatsCluster;
let set: RedisSentinelSet;
let registry: TestServer & { host: string };
let inst: IsolatedEnv;
let nc: NatsConnection;
let svc: RunningImageService;

const berth = (...args: string[]) => runBerth(args, { env: inst.env });

beforeAll(async () => {
  pki = await makeTestPki();
  const tls = { ca: pki.ca, ...pki.server, verifyClients: true };
  [cluster, set, registry] = await Promise.all([
    startNatsCluster({ size: 3, tls }),
    startRedisSentinel({ tls, name: 'berth-e2e' }),
    startRegistry(),
  ]);
  await Promise.all([
    uploadImage(registry.url, 'e2e/busybox', 'v1', img),
    uploadImage(registry.url, 'e2e/busybox', 'v2', img),
  ]);
  const client = { ca: pki.ca, ...pki.client };
  // Everything in the config file, as an operator writes it: both the service and the CLI read it.
  inst = await isolatedEnv({
    config: {
      natsUrl: cluster.url,
      natsTls: client,
      redisUrl: `rediss://${set.name}`,
      redisTls: client,
      redisSentinel: { name: set.name, sentinels: set.sentinelAddrs, tls: true },
    },
    env: { BERTH_LOG_LEVEL: 'info' },
  });
  nc = await connectNats({ url: cluster.url, name: 'e2e-ha', tls: client });
  svc = await startImageService(inst, nc);
});
afterAll(async () => {
  await svc?.stop();
  await nc?.close();
  await Promise.all([cluster?.stop(), set?.stop(), registry?.stop()]);
  await pki?.remove();
  await removeIsolatedEnv(inst);
});

/** The cluster member whose /connz lists a connection named `name`. */
async function memberServing(name: string) {
  for (const m of cluster.members) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
    const res = await fetch(`http://127.0.0.1:${m.monitorPort}/connz`);
    const { connections } = (await res.json()) as { connections?: { name?: string }[] };
    if (connections?.some((c) => c.name === name)) return m;
  }
  return undefined;
}

/** Resolves once the replica has received everything the primary has. */
async function replicaCaughtUp(primary: RedisSentinelSet['primary'], replica: RedisSentinelSet['replica']) {
  const offset = (info: unknown, key: string) =>
    Number(new RegExp(`${key}:(\\d+)`).exec(String(info))?.[1] ?? -1);
  const want = offset(await primary.command('INFO', 'replication'), 'master_repl_offset');
  await until('the replica to catch up', async () => {
    return offset(await replica.command('INFO', 'replication'), 'slave_repl_offset') >= want;
  });
}

describe('berth over TLS on a NATS cluster and Redis under Sentinel', () => {
  it('keeps its images and keeps pulling while a NATS server and the Redis primary are killed', async () => {
    const v1 = `${registry.host}/e2e/busybox:v1`;
    const pulled = await berth('pull', '--no-unpack', v1);
    expect(pulled.stderr).toBe('');
    expect(pulled.code).toBe(0);
    const listed = new RegExp(`${registry.host}/e2e/busybox\\s+v1\\s+[0-9a-f]{12}`);

    // The NATS server the image-service is connected to dies; the service moves to another.
    const name = `image-service@${inst.nodeId}`;
    const victim = await memberServing(name);
    if (!victim) throw new Error(`no cluster member lists ${name}`);
    await victim.kill();
    await until('the image-service to reconnect to another server', async () => {
      const m = await memberServing(name);
      return m !== undefined && m !== victim;
    });
    const afterNats = await berth('images');
    expect(afterNats.stderr).toBe('');
    expect(afterNats.stdout).toMatch(listed);

    // The Redis primary dies once the replica has the image's records; Sentinel promotes it.
    await replicaCaughtUp(set.primary, set.replica);
    await set.primary.kill();
    expect(await set.waitFailover(set.primary.port)).toBe(set.replica.port);
    const afterRedis = await berth('images');
    expect(afterRedis.stderr).toBe('');
    expect(afterRedis.stdout).toMatch(listed);

    // Both down at once still leaves a working node: a new pull is recorded and listed.
    const v2 = await berth('pull', '--no-unpack', `${registry.host}/e2e/busybox:v2`);
    expect(v2.stderr).toBe('');
    expect(v2.code).toBe(0);
    expect((await berth('images')).stdout).toMatch(new RegExp(`${registry.host}/e2e/busybox\\s+v2\\s+`));
    // The records are on the promoted server: v1's from before the failover, v2's from after.
    const images = keys.images(inst.nodeId, 'default');
    expect(await set.replica.command('ZRANGE', images, '0', '-1')).toEqual([
      v1,
      `${registry.host}/e2e/busybox:v2`,
    ]);
  });
});
