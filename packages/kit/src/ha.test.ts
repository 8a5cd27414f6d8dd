import { randomBytes } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import {
  makeTestPki,
  type NatsCluster,
  type RedisSentinelSet,
  startNats,
  startNatsCluster,
  startRedis,
  startRedisSentinel,
  type TestPki,
} from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from './client.js';
import { connectNats } from './nats.js';
import { type ChildService, startTestService } from './testdata/child.js';
import { TestApi } from './testdata/test-api.mjs';

// The kit on the distributed engines themselves: a three-server NATS cluster, and a Redis
// primary with a replica under Sentinel (over TLS), all on loopback. Servers die by SIGKILL.

/** What a caller may see while a server is lost: the result, or a clear error worth a retry. */
async function settle<T>(p: Promise<T>): Promise<{ ok: T } | { err: BerthError }> {
  try {
    return { ok: await p };
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED]).toContain((err as BerthError).code);
    return { err: err as BerthError };
  }
}

/**
 * Polls `probe` until it is true, bounded by 20 s. A probe whose connection fails counts as not yet: a failover
 * reconfigures the servers, and Sentinel then kills their normal clients (`CLIENT KILL TYPE
 * normal`), a probe in its TLS handshake included.
 */
async function until(probe: () => Promise<boolean>) {
  for (const deadline = Date.now() + 20_000; !(await probe().catch(() => false)); ) {
    if (Date.now() > deadline) throw new Error(`condition not met within 20 s: ${probe}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A `hold` call on the test service that the test releases once the handler has started. */
async function heldCall(nc: NatsConnection, child: ChildService) {
  const id = randomBytes(4).toString('hex');
  const from = child.mark();
  const reply = settle(call(nc, TestApi, 'hold', { id }, { timeoutMs: 10_000 }));
  await child.waitForLog((l) => l.msg === 'hold started' && l.holdId === id, { from });
  return { id, reply, release: () => nc.publish(`test.release.${id}`) };
}

describe('a three-server NATS cluster', () => {
  let cluster: NatsCluster;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  beforeAll(async () => {
    [cluster, redis] = await Promise.all([startNatsCluster({ size: 3 }), startRedis({ appendonly: false })]);
  });
  afterAll(async () => {
    await Promise.all([cluster?.stop(), redis?.stop()]);
  });

  it('keeps serving while the server a service and its caller use is killed', async () => {
    const child = await startTestService({ natsUrl: cluster.url, redisUrl: redis.url });
    const observer = await connectNats({ url: cluster.url, name: 'kit-ha-observer' });
    let client: NatsConnection | undefined;
    try {
      const first = await call(observer, TestApi, 'where', {});
      const victim = cluster.memberAt(first.server);
      if (!victim) throw new Error(`the service's server ${first.server} is not a member`);
      // The caller starts on the same server, so both lose their connection at once.
      const others = cluster.members.filter((m) => m !== victim).map((m) => m.url);
      client = await connectNats({
        url: [victim.url, ...others].join(','),
        name: 'kit-ha-client',
        extra: { noRandomize: true },
      });
      expect(client.getServer()).toBe(first.server);

      const inFlight = await heldCall(client, child);
      const reconnected = child.waitForLog((l) => l.msg === 'nats status' && l.nats === 'reconnect', {
        from: child.mark(),
      });
      const callerBack = (async () => {
        for await (const s of client.status()) if (s.type === 'reconnect') return;
      })();
      await victim.kill();
      await Promise.all([reconnected, callerBack]);
      // The request reached the handler before the kill; its reply is owed to a caller that now
      // sits on another server. Once the release can reach the handler (the service's interest
      // has crossed the routes to the caller's server), the call finishes.
      const callerAt = cluster.memberAt(client.getServer());
      if (!callerAt) throw new Error(`the caller's server ${client.getServer()} is not a member`);
      await until(() => cluster.hasInterest(callerAt, `test.release.${inFlight.id}`));
      inFlight.release();
      expect(await inFlight.reply).toEqual({ ok: { id: inFlight.id, pid: child.proc.pid } });

      // A new call succeeds too, through a server that is still up.
      // Its release, too, must wait for the handler's interest to reach the caller's server (the
      // two may sit on different servers now): published before that, it is dropped.
      const again = await heldCall(client, child);
      await until(() => cluster.hasInterest(callerAt, `test.release.${again.id}`));
      again.release();
      expect(await again.reply).toEqual({ ok: { id: again.id, pid: child.proc.pid } });
      const now = await call(client, TestApi, 'where', {});
      expect(now.server).not.toBe(first.server);
      expect(cluster.memberAt(now.server)).toBeDefined();
      expect(client.getServer()).not.toBe(first.server);

      // The killed server comes back and rejoins the mesh.
      await victim.restart();
      await cluster.waitFormed();
    } finally {
      await client?.close();
      await observer.close();
      await child.stop();
    }
  });
});

describe('Redis under Sentinel, over TLS', () => {
  let pki: TestPki;
  let set: RedisSentinelSet;
  let nats: Awaited<ReturnType<typeof startNats>>;
  let child: ChildService;
  let nc: NatsConnection;
  beforeAll(async () => {
    pki = await makeTestPki();
    [set, nats] = await Promise.all([
      startRedisSentinel({ tls: { ca: pki.ca, ...pki.server, verifyClients: true }, name: 'berth-ha' }),
      startNats({ jetstream: false }),
    ]);
    child = await startTestService({
      natsUrl: nats.url,
      redisUrl: `rediss://${set.name}`,
      config: {
        redisTls: { ca: pki.ca, ...pki.client },
        redisSentinel: { name: set.name, sentinels: set.sentinelAddrs, tls: true },
      },
    });
    nc = await connectNats({ url: nats.url, name: 'kit-sentinel-test' });
  });
  afterAll(async () => {
    await nc?.close();
    await child?.stop();
    await Promise.all([set?.stop(), nats?.stop()]);
    await pki?.remove();
  });

  const put = (key: string, value: string) => call(nc, TestApi, 'put', { key, value }, { timeoutMs: 30_000 });
  const get = async (key: string) => (await call(nc, TestApi, 'get', { key })).value;
  /** Waits until `node` holds the value: replication is asynchronous. */
  async function replicated(port: number, key: string, value: string) {
    const node = [set.primary, set.replica].find((n) => n.port === port);
    if (!node) throw new Error(`no redis on port ${port}`);
    await until(async () => (await node.command('GET', `berth:v1:test:${key}`)) === value);
  }

  it('follows a switch of primary, then a SIGKILL of the primary, losing nothing recorded', async () => {
    const t0 = Date.now();
    // Figures for the log: how long each stage took on this machine.
    const stage = (what: string) => console.info(`sentinel test, ${Date.now() - t0} ms: ${what}`);
    expect(await set.primaryPort()).toBe(set.primary.port);
    await put('before', '1');
    await replicated(set.replica.port, 'before', '1');

    // A planned switch: the old primary stays up, becomes a replica and refuses writes
    // (READONLY), which sends the service to the new primary. (A write that reached the old
    // primary between the promotion and its demotion would be lost: replication is asynchronous,
    // see docs/operations.md.)
    await set.sentinels[0]?.command('SENTINEL', 'FAILOVER', set.name);
    expect(await set.waitFailover(set.primary.port)).toBe(set.replica.port);
    stage('planned switch: replica promoted');
    await until(async () => String(await set.primary.command('INFO', 'replication')).includes('role:slave'));
    await put('switched', '2');
    stage('written after the switch');
    expect(await set.replica.command('GET', 'berth:v1:test:switched')).toBe('2');

    // A crash: the new primary dies while a write is in flight.
    await set.waitReplica(set.primary.port);
    await replicated(set.primary.port, 'switched', '2');
    stage('the old primary is a healthy replica');
    await set.replica.kill();
    const during = await settle(put('during', '3'));
    console.info(`write in flight across the kill: ${'ok' in during ? 'finished' : during.err.message}`);
    expect(await set.waitFailover(set.replica.port)).toBe(set.primary.port);
    stage('failed over after the SIGKILL');
    if ('err' in during) await put('during', '3');
    expect(await set.primary.command('GET', 'berth:v1:test:during')).toBe('3');

    // Everything recorded before either failover is still there, and writes go on.
    expect(await get('before')).toBe('1');
    expect(await get('switched')).toBe('2');
    expect(await get('during')).toBe('3');
    await put('after', '4');
    expect(await get('after')).toBe('4');
    // Sentinel's own periods (INFO to each server every 10 s) make this take about 25 s.
  }, 120_000);
});
