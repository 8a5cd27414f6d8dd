/**
 * Scaling benchmark (issue 10): one workload at a chosen concurrency against a fresh `berth up`
 * stack with chosen replica counts, then throughput, p50/p95/p99 latency per operation and each
 * service's busy share from its own metrics (see scale-metrics.ts: CPU share and handler share),
 * printed as a table and written as one CSV per run. Prints figures; asserts nothing.
 *
 * Run: pnpm --filter @berth/bench run scale -- --workload pull -n 16 -c 4 --replicas image-service=2
 * Options: --workload pull|run|pod (default run), -n operations (16), -c concurrency (4),
 * --replicas SERVICE=N (repeatable, as `berth up --replicas`), --layers (2) and --layer-kib (1024)
 * for the pull images, --csv-dir (default: the current directory).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connectNats } from '@berth/kit';
import { traceStoreDir } from '@berth/kit/tracing';
import { startRegistry } from '@berth/testing';
import { sweepRunc, unmountUnder } from '../tests/e2e/containers-stack.js';
import { startStack } from '../tests/harness/stack.js';
import { pct } from './measure.js';
import { type Busy, busyShares, procCpuSeconds, snapshot, targetsOf } from './scale-metrics.js';
import { runSpans, type SelfTime, selfTimes } from './scale-traces.js';
import { prepare, WORKLOADS, type WorkloadName } from './scale-workloads.js';

// pnpm passes the `--` of `pnpm run scale -- ...` through.
const argv = process.argv.slice(2);
const { values } = parseArgs({
  args: argv[0] === '--' ? argv.slice(1) : argv,
  options: {
    workload: { type: 'string', default: 'run' },
    n: { type: 'string', short: 'n', default: '16' },
    concurrency: { type: 'string', short: 'c', default: '4' },
    replicas: { type: 'string', multiple: true, default: [] },
    layers: { type: 'string', default: '2' },
    'layer-kib': { type: 'string', default: '1024' },
    'csv-dir': { type: 'string', default: '.' },
  },
});
const workload = values.workload as WorkloadName;
if (!WORKLOADS.includes(workload)) throw new Error(`--workload: expected one of ${WORKLOADS.join(', ')}`);
const N = Number(values.n);
const C = Number(values.concurrency);
if (!(Number.isInteger(N) && N > 0 && Number.isInteger(C) && C > 0))
  throw new Error('-n and -c must be whole numbers above 0');
const replicas: Record<string, number> = {};
for (const r of values.replicas) {
  const [name, count] = r.split('=');
  if (!name || !/^\d+$/.test(count ?? '')) throw new Error(`--replicas "${r}": expected SERVICE=N`);
  replicas[name] = Number(count);
}
const say = (l: string) => process.stdout.write(`${l}\n`);
const f1 = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(2));
const load = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

/** Runs `op(0..n-1)` with at most `c` in flight; the latency of each in ms. */
async function drive(n: number, c: number, op: (i: number) => Promise<void>): Promise<number[]> {
  const lat: number[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      const t = performance.now();
      await op(i);
      lat.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  return lat;
}

const registry = await startRegistry();
const stack = await startStack({ replicas });
try {
  const nc = await connectNats({ url: stack.natsUrl, name: 'bench-scale' });
  const status = (await stack.status()).json;
  const targets = targetsOf(status);
  // CPU the services' metrics do not show: the embedded servers, and runc runs (the shim's
  // waited-for children, CNI plugins too; conmon double-forks away and is not counted).
  const others = new Map<string, () => number>();
  for (const c of stack.state()?.children ?? [])
    if (c.kind === 'embedded' && c.pid) others.set(c.name, () => procCpuSeconds(c.pid as number));
  const shim = status.services.find((s) => s.service === 'shim')?.instances[0];
  if (shim) others.set('shim children (runc, cni)', () => procCpuSeconds(shim.pid, true));
  const w = await prepare(
    workload,
    {
      nc,
      node: stack.nodeId,
      registryHost: registry.host,
      registryUrl: registry.url,
      scratch: stack.root,
      criSocket: join(stack.runRoot, 'cri.sock'),
    },
    N,
    { layers: Number(values.layers), layerKiB: Number(values['layer-kib']) },
  );
  const loadBefore = load();
  const a = await snapshot(targets, others);
  const fromUs = Date.now() * 1000;
  const t0 = performance.now();
  const lat = await drive(N, C, (i) => w.op(i));
  const wallS = (performance.now() - t0) / 1000;
  const b = await snapshot(targets, others);
  const toUs = Date.now() * 1000;
  const loadAfter = load();
  await w.close();
  await nc.close();
  const busy = busyShares(a, b, wallS);
  const store = traceStoreDir({ stateRoot: stack.stateRoot, runRoot: stack.runRoot }, stack.env);
  const self = store ? selfTimes(await runSpans(store, fromUs, toUs)) : [];
  const repl = Object.entries(replicas)
    .map(([s, n]) => `${s}=${n}`)
    .join(',');
  const run = {
    workload,
    replicas: repl || 'all=1',
    concurrency: C,
    n: N,
    wall_s: wallS,
    ops_per_s: N / wallS,
    p50_ms: pct(lat, 50),
    p95_ms: pct(lat, 95),
    p99_ms: pct(lat, 99),
  };
  say(
    `# berth scale: ${workload}, ${N} ops at concurrency ${C}, replicas ${run.replicas}; ` +
      `${execFileSync('nproc').toString().trim()} cores, load average ${loadBefore} before, ${loadAfter} after`,
  );
  say(
    `wall ${f1(wallS)} s  throughput ${f1(run.ops_per_s)} ops/s  latency p50 ${run.p50_ms.toFixed(0)} ms  ` +
      `p95 ${run.p95_ms.toFixed(0)} ms  p99 ${run.p99_ms.toFixed(0)} ms`,
  );
  say(table(busy));
  say('self time from the traces (span duration minus its children), share of wall time:');
  for (const x of self)
    say(
      `  ${x.service.padEnd(18)} ${f1(x.seconds / wallS)}  most in ${x.top.map(([n, sec]) => `${n} ${f1(sec / wallS)}`).join(', ')}`,
    );
  const file = resolve(
    values['csv-dir'],
    `scale-${workload}-${run.replicas.replace(/[,=]/g, '-')}-c${C}-${Date.now()}.csv`,
  );
  writeFileSync(file, csv(run, loadBefore, busy, self, wallS));
  say(`csv: ${file}`);
} finally {
  sweepRunc(stack.stateRoot);
  unmountUnder(stack.root);
  await stack.stop();
  await registry.stop();
}

/** The busy-share table, one row per service (replicas summed). */
function table(busy: Busy[]): string {
  const rows = [
    ['service', 'replicas', 'cpu share', 'handler share', 'top op (handler share)'],
    ...busy.map((x) => [x.service, String(x.replicas), f1(x.cpu), f1(x.handler), x.topOp]),
  ];
  const w = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i] ?? 0)).join('  ')).join('\n');
}

/** One CSV row per service, each carrying the run's figures. */
function csv(
  run: Record<string, string | number>,
  load1: string,
  busy: Busy[],
  self: SelfTime[],
  wallS: number,
): string {
  const head = [
    ...Object.keys(run),
    'load_avg',
    'service',
    'service_replicas',
    'cpu_share',
    'handler_share',
    'trace_self_share',
  ];
  const selfOf = (service: string) => {
    const x = self.find((y) => y.service === service);
    return x ? (x.seconds / wallS).toFixed(3) : '';
  };
  const rows: Busy[] = [
    ...busy,
    ...self
      .filter((y) => !busy.some((x) => x.service === y.service))
      .map((y) => ({ service: y.service, replicas: 0, cpu: Number.NaN, handler: Number.NaN, topOp: '' })),
  ];
  const fixed = Object.values(run).map((v) => (typeof v === 'number' ? v.toFixed(3) : v));
  const num = (v: number) => (Number.isNaN(v) ? '' : v.toFixed(3));
  const lines = rows.map((x) =>
    [...fixed, load1, x.service, x.replicas, num(x.cpu), num(x.handler), selfOf(x.service)]
      .map(String)
      .map((v) => (v.includes(',') || v.includes(' ') ? `"${v}"` : v))
      .join(','),
  );
  return `${head.join(',')}\n${lines.join('\n')}\n`;
}
