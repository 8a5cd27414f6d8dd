/**
 * Writable-layer usage benchmark (kubelet's ListContainerStats asks the snapshot-service for every
 * running container's usage every ~10 s). Prints figures; asserts nothing.
 * An active snapshot whose upper directory holds BENCH_FILES files (20,000 by default), served by
 * a snapshot-service instance over a real nats-server and redis-server, asked BENCH_ASKS times:
 *  (a) before: one walk per ask, what every `usage` cost until the cache: `usage {fresh: true}`
 *      (the same walk, now off the event loop), and the former synchronous walk in-process, which
 *      held the service's event loop for its whole length
 *  (b) after: `usage {}` answered from the cache (the first ask walks, the others do not)
 *  (c) BENCH_CONTAINERS such snapshots asked at once, as one ListContainerStats of a node, before
 *      (fresh) and after (cached)
 * Run: pnpm --filter @berth/bench run usage   Env: BENCH_FILES (20000), BENCH_ASKS (50),
 * BENCH_CONTAINERS (5).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { nativeFs } from '@berth/snapshot-service';
import { startSnapshotEnv } from '@berth/snapshot-service/testing/env';
import { pct } from './measure.js';

const FILES = Number(process.env.BENCH_FILES ?? 20_000);
const ASKS = Number(process.env.BENCH_ASKS ?? 50);
const CONTAINERS = Number(process.env.BENCH_CONTAINERS ?? 5);

const say = (s: string) => process.stdout.write(`${s}\n`);
const line = (label: string, xs: number[]) =>
  say(
    `  ${label.padEnd(44)} p50 ${pct(xs, 50).toFixed(2).padStart(7)} ms  p95 ${pct(xs, 95)
      .toFixed(2)
      .padStart(7)} ms  total ${xs
      .reduce((a, b) => a + b, 0)
      .toFixed(0)
      .padStart(6)} ms`,
  );

async function timed<T>(fn: () => Promise<T>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Fills an upper directory like a container that wrote `n` files (100 per directory). */
function fill(dir: string, n: number): void {
  for (let i = 0; i < n; i++) {
    const d = join(dir, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) mkdirSync(d);
    writeFileSync(join(d, `f${i}`), 'x'.repeat(100));
  }
}

// A snapshot-service on a private nats-server and redis-server, as its own tests start it.
const env = await startSnapshotEnv();
const c = env.client;

try {
  const uppers: string[] = [];
  for (let i = 0; i < Math.max(1, CONTAINERS); i++) {
    const { mounts } = await c.prepare({ key: `ctr${i}` });
    const upper = mounts[0]?.source as string;
    fill(upper, FILES);
    uppers.push(upper);
  }
  const u = await c.usage({ key: 'ctr0', fresh: true });
  say(`usage of one writable layer: ${FILES} files, ${u.inodes} inodes, ${(u.size / 1e6).toFixed(1)} MB`);
  say(`(a, b) ${ASKS} asks of one snapshot over NATS, one after another:`);

  const sync: number[] = [];
  const fs = nativeFs();
  for (let i = 0; i < ASKS; i++) sync.push(await timed(async () => fs.diskUsage(uppers[0] as string)));
  line('before, former synchronous walk (in-process)', sync);
  const fresh: number[] = [];
  for (let i = 0; i < ASKS; i++) fresh.push(await timed(() => c.usage({ key: 'ctr0', fresh: true })));
  line('before, a walk per ask (usage {fresh: true})', fresh);
  const cached: number[] = [];
  for (let i = 0; i < ASKS; i++) cached.push(await timed(() => c.usage({ key: 'ctr1' })));
  line('after, cached (usage {}), first ask walks', cached);
  line('after, cached, asks 2..N', cached.slice(1));

  if (CONTAINERS > 1) {
    say(`(c) ${CONTAINERS} snapshots asked at once (one ListContainerStats), ${ASKS} rounds:`);
    const keys = uppers.map((_, i) => `ctr${i}`);
    const round = (fresh: boolean) => timed(() => Promise.all(keys.map((key) => c.usage({ key, fresh }))));
    const before: number[] = [];
    for (let i = 0; i < ASKS; i++) before.push(await round(true));
    line('before, a walk per snapshot per round', before);
    await round(false);
    const after: number[] = [];
    for (let i = 0; i < ASKS; i++) after.push(await round(false));
    line('after, cached (entries already made)', after);
  }
  say(
    'after: each cached figure is walked again every usageRefreshMs (10 s) while asked for, at most ' +
      'usageWalkConcurrency (2) walks at once, off the event loop',
  );
} finally {
  await env.stop();
}
