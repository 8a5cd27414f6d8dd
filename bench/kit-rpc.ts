/**
 * Service kit request/reply benchmark. Prints figures; asserts nothing.
 *  (a) latency: N sequential `echo` calls from this process to a kit service in another process
 *  (b) throughput: M calls with C in flight, against one replica, then two replicas (queue group)
 *  (c) no-responders: how fast a call to a missing service fails with UNAVAILABLE
 * The service is the kit's own test service (packages/kit/src/testdata/test-service.mjs), built
 * with runService; servers are real nats-server/redis-server on loopback from @berth/testing.
 * Run: pnpm --filter @berth/bench exec tsx kit-rpc.ts   Env: BENCH_N (2000), BENCH_M (20000), BENCH_C (64).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageApi } from '@berth/api';
import { call, connectNats } from '@berth/kit';
import { startNats, startRedis } from '@berth/testing';
import { TestApi } from '../packages/kit/src/testdata/test-api.mjs';
import { pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 2000);
const M = Number(process.env.BENCH_M ?? 20_000);
const C = Number(process.env.BENCH_C ?? 64);
const FIXTURE = join(import.meta.dirname, '..', 'packages', 'kit', 'src', 'testdata', 'test-service.mjs');

const ms = (n: number) => `${n.toFixed(3)} ms`;

async function replica(natsUrl: string, redisUrl: string, dir: string, i: number): Promise<ChildProcess> {
  const config = join(dir, 'config.json');
  await writeFile(config, '{}');
  const p = spawn(process.execPath, [FIXTURE], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      PATH: process.env.PATH,
      BERTH_CONFIG: config,
      BERTH_NATS_URL: natsUrl,
      BERTH_REDIS_URL: redisUrl,
      BERTH_NODE_ID: `bench-${i}`,
      BERTH_STATE_ROOT: join(dir, `state-${i}`),
      BERTH_RUN_ROOT: join(dir, `run-${i}`),
      BERTH_LOG_LEVEL: 'info',
    },
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('"msg":"task-service ready"')) resolve();
    });
    p.once('exit', (code) => reject(new Error(`replica exited ${code}`)));
  });
  return p;
}

async function throughput(nc: Awaited<ReturnType<typeof connectNats>>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next < M) {
        next++;
        await call(nc, TestApi, 'echo', { text: 'x' }, { timeoutMs: 10_000 });
      }
    }),
  );
  return M / ((performance.now() - started) / 1000);
}

const [nats, redis] = await Promise.all([startNats({ jetstream: false }), startRedis({ appendonly: false })]);
const dir = await mkdtemp(join(tmpdir(), 'berth-bench-kit-'));
const procs: ChildProcess[] = [];
try {
  const nc = await connectNats({ url: nats.url, name: 'bench' });
  procs.push(await replica(nats.url, redis.url, dir, 1));
  for (let i = 0; i < 200; i++) await call(nc, TestApi, 'echo', { text: 'warm' }, { timeoutMs: 5000 });

  const lat: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = performance.now();
    await call(nc, TestApi, 'echo', { text: 'x' }, { timeoutMs: 5000 });
    lat.push(performance.now() - t);
  }
  console.log(
    `(a) sequential echo across processes: n=${N} p50=${ms(pct(lat, 50))} p99=${ms(pct(lat, 99))} max=${ms(Math.max(...lat))}`,
  );

  console.log(
    `(b) throughput, ${C} in flight, ${M} calls, 1 replica: ${(await throughput(nc)).toFixed(0)} req/s`,
  );
  procs.push(await replica(nats.url, redis.url, dir, 2));
  console.log(
    `(b) throughput, ${C} in flight, ${M} calls, 2 replicas: ${(await throughput(nc)).toFixed(0)} req/s`,
  );

  const fails: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await call(nc, ImageApi, 'pull', { ref: 'x' }, { node: 'nobody', timeoutMs: 10_000 }).catch(
      () => undefined,
    );
    fails.push(performance.now() - t);
  }
  console.log(`(c) no-responders to UNAVAILABLE: n=200 p50=${ms(pct(fails, 50))} p99=${ms(pct(fails, 99))}`);
  await nc.close();
} finally {
  for (const p of procs) {
    p.kill('SIGTERM');
  }
  await Promise.all(
    procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))),
  );
  await Promise.all([nats.stop(), redis.stop()]);
  await rm(dir, { recursive: true, force: true });
}
