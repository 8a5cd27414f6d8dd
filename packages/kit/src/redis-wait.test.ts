import { randomBytes } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import { type RedisSentinelSet, startRedisSentinel } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Config } from './config.js';
import { connectRedis, Redis } from './redis.js';

// A primary and a replica under one sentinel, on loopback. MONITOR on the primary shows which
// commands each client sends, so the test sees WAIT sent (or not) rather than assuming it.

const TIMEOUT_MS = 300;
const UPDATE = "redis.call('HSET', KEYS[1], 'f', ARGV[1]) return 1";

let set: RedisSentinelSet;
let acked: Redis;
let plain: Redis;
let watcher: Redis;
let monitor: Redis | undefined;
const seen: string[][] = [];

beforeAll(async () => {
  set = await startRedisSentinel({ name: 'berth-wait' });
  const sentinel = { name: set.name, sentinels: set.sentinelAddrs };
  acked = connectRedis(`redis://${set.name}`, undefined, {
    sentinel: { ...sentinel, replicaAcks: { replicas: 1, timeoutMs: TIMEOUT_MS } },
  });
  plain = connectRedis(`redis://${set.name}`, undefined, { sentinel });
  watcher = new Redis({ host: '127.0.0.1', port: set.primary.port, lazyConnect: true });
  // The last test kills the primary: reconnection errors are expected, not worth a log line.
  for (const c of [acked, plain, watcher]) c.on('error', () => {});
  await Promise.all([acked.connect(), plain.connect(), watcher.connect()]);
  monitor = await watcher.monitor();
  monitor.on('error', () => {});
  monitor.on('monitor', (_time: string, args: unknown[]) => seen.push(args.map(String)));
});

afterAll(async () => {
  acked?.disconnect();
  plain?.disconnect();
  watcher?.disconnect();
  // MONITOR runs on a connection of its own.
  monitor?.disconnect();
  await set?.stop();
});

/** The WAITs the primary received while `work` ran, known once a marker sent after it shows up. */
async function waitsDuring(work: () => Promise<void>): Promise<string[][]> {
  const from = seen.length;
  await work();
  const marker = `marker-${randomBytes(4).toString('hex')}`;
  await plain.echo(marker);
  for (const deadline = Date.now() + 10_000; !seen.slice(from).some((a) => a[1] === marker); ) {
    if (Date.now() > deadline) throw new Error('MONITOR did not show the marker within 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  return seen.slice(from).filter((a) => a[0]?.toLowerCase() === 'wait');
}

const key = (what: string) => `berth:v1:test:${what}:${randomBytes(4).toString('hex')}`;

describe('redisSentinel.replicaAcks', () => {
  it('makes a write, a script and a transaction be on the replica by the time each returns', async () => {
    const [k, h, t] = [key('k'), key('h'), key('t')];
    const waits = await waitsDuring(async () => {
      expect(await acked.set(k, 'v1')).toBe('OK');
      expect(await set.replica.command('GET', k)).toBe('v1');
      expect(await acked.eval(UPDATE, 1, h, 'x')).toBe(1);
      expect(await set.replica.command('HGET', h, 'f')).toBe('x');
      expect(await acked.multi().set(t, 'a').incr(`${t}:n`).exec()).toEqual([
        [null, 'OK'],
        [null, 1],
      ]);
      expect(await set.replica.command('GET', t)).toBe('a');
      // Reads, alone or batched, wait for nothing.
      expect(await acked.get(k)).toBe('v1');
      expect(await acked.multi().get(k).hget(h, 'f').exec()).toEqual([
        [null, 'v1'],
        [null, 'x'],
      ]);
      expect(await acked.pipeline().exec()).toEqual([]);
    });
    expect(waits).toEqual([
      ['wait', '1', String(TIMEOUT_MS)],
      ['wait', '1', String(TIMEOUT_MS)],
      ['wait', '1', String(TIMEOUT_MS)],
    ]);
  });

  it('fails a write with UNAVAILABLE naming the count when the replica does not answer in time', async () => {
    const k = key('stopped');
    set.replica.proc.kill('SIGSTOP');
    let err: unknown;
    let took = 0;
    try {
      const t0 = Date.now();
      err = await acked.set(k, 'lost?').then(
        () => undefined,
        (e: unknown) => e,
      );
      took = Date.now() - t0;
    } finally {
      set.replica.proc.kill('SIGCONT');
    }
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
    expect((err as BerthError).message).toMatch(/not confirmed by 1 replica\(s\) within 300 ms/);
    expect((err as BerthError).message).toMatch(/0 acknowledged; the write may exist on the primary/);
    expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(took).toBeLessThan(TIMEOUT_MS + 2_000);
    // The replica is back: the retry is confirmed and on the replica.
    expect(await acked.set(k, 'again')).toBe('OK');
    expect(await set.replica.command('GET', k)).toBe('again');
  });

  it('sends no WAIT when not configured', async () => {
    const [k, h] = [key('plain'), key('plain-h')];
    const waits = await waitsDuring(async () => {
      await plain.set(k, 'v');
      await plain.eval(UPDATE, 1, h, 'y');
      await plain.multi().set(k, 'w').del(h).exec();
    });
    expect(waits).toEqual([]);
  });

  // Last: it kills the primary of the set the tests share.
  it('keeps an acknowledged write through a failover, and fails a write no replica can confirm', async () => {
    const k = key('survives');
    expect(await acked.set(k, 'acked')).toBe('OK');
    const old = set.primary.port;
    await set.primary.kill();
    // Sent while the primary is gone: it waits for the promotion, then has no replica to confirm it.
    const inFlight = acked.set(key('in-flight'), 'x').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(await set.waitFailover(old)).toBe(set.replica.port);
    const err = await inFlight;
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.UNAVAILABLE);
    expect((err as BerthError).message).toMatch(/0 acknowledged/);
    // The write acknowledged before the kill is on the promoted replica.
    expect(await acked.get(k)).toBe('acked');
  });

  it('is validated with the rest of the config', () => {
    const base = { name: 'berth', sentinels: [{ host: '127.0.0.1', port: 26379 }] };
    const parse = (replicaAcks: unknown) =>
      Config.shape.redisSentinel.safeParse({ ...base, replicaAcks }).error?.issues[0]?.message;
    expect(parse({ replicas: 1, timeoutMs: 500 })).toBeUndefined();
    expect(parse({ replicas: 0, timeoutMs: 500 })).toBe('replicaAcks.replicas must be at least 1');
    expect(parse({ replicas: 1, timeoutMs: 0 })).toBe('replicaAcks.timeoutMs must be at least 1');
  });
});
