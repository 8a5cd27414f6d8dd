/**
 * Where `berth run --rm IMAGE true` goes, per phase: a private container stack from this checkout
 * (as bench/cli.ts), BENCH_N runs per network (default 8, `none` and `bridge` alternating), and
 * per phase the median over the runs, read from the span store, then the last run of each
 * network as a waterfall. Prints; asserts nothing.
 * Run: pnpm --filter @berth/bench run run-trace   (env BENCH_N, NETS=none,bridge)
 */
import { startContainerStack } from '../tests/e2e/containers-stack.js';
import { loadText, pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 8);
const NETS = (process.env.NETS ?? 'none,bridge').split(',');

/** One span as the store keeps it (the fields read here). */
interface Span {
  name: string;
  kind: number;
  service: string;
  parentSpanId?: string;
  startUs: number;
  endUs: number;
}

const SERVER = 1;
const CLIENT = 2;

/** The phases of one run, ms from the CLI's root span (NaN for a span the trace lacks). */
function phases(spans: Span[]): Record<string, number> {
  const find = (name: string, kind?: number, service?: string) =>
    spans.find(
      (s) =>
        s.name === name && (kind === undefined || s.kind === kind) && (!service || s.service === service),
    );
  const root = spans.find((s) => !s.parentSpanId && s.service === 'berth');
  const at = (s: Span | undefined, end = false) =>
    s && root ? ((end ? s.endUs : s.startUs) - root.startUs) / 1000 : Number.NaN;
  const call = find('task-service/run-container', CLIENT);
  return {
    'run-container sent': at(call),
    'shim create begins': at(find('shim/create', SERVER)),
    'conmon started': at(find('conmon start')),
    'runc create done': at(find('conmon start'), true),
    'task exit announced': at(find('task exit')),
    'CLI hears the exit': at(find('process berth.events.tasks.exit', undefined, 'berth')),
    'delete-container answered': at(find('task-service/delete-container', CLIENT), true),
    'root span ends': at(root, true),
  };
}

const s = await startContainerStack();
try {
  const image = (await s.importBusybox('berth.bench/busybox:latest')).name;
  const runs = new Map<string, Record<string, number>[]>(NETS.map((n) => [n, []]));
  const walls = new Map<string, number[]>(NETS.map((n) => [n, []]));
  const last = new Map<string, string>();
  for (let i = 0; i < N + 1; i++) {
    for (const net of NETS) {
      const a = performance.now();
      const r = await s.berth(['run', '--rm', '--network', net, image, 'true']);
      const wall = performance.now() - a;
      if (r.code !== 0) throw new Error(`berth run exited ${r.code}: ${r.stderr}`);
      // The services write their spans in batches: wait until this run's exit is in.
      let spans: Span[] = [];
      for (let t = 0; t < 20; t++) {
        spans = JSON.parse((await s.berth(['trace', '--last', '--json'])).stdout) as Span[];
        if (spans.some((x) => x.name === 'task exit') && spans.some((x) => x.name === 'conmon start')) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      // The first run of each network warms up (code caches, the stack's first create).
      if (i === 0) continue;
      runs.get(net)?.push(phases(spans));
      walls.get(net)?.push(wall);
      if (i === N) last.set(net, (await s.berth(['trace', '--last'])).stdout);
    }
  }
  const load = loadText();
  process.stdout.write(`${N} runs per network, load ${load}; median ms from the CLI's root span\n`);
  for (const net of NETS) {
    const rs = runs.get(net) ?? [];
    process.stdout.write(
      `\n== --network ${net}: process wall median ${pct(walls.get(net) ?? [], 50).toFixed(1)} ms\n`,
    );
    for (const k of Object.keys(rs[0] ?? {})) {
      const xs = rs.map((r) => r[k] ?? Number.NaN).filter((x) => !Number.isNaN(x));
      process.stdout.write(`${k.padEnd(28)} ${pct(xs, 50).toFixed(1).padStart(7)}\n`);
    }
  }
  for (const [net, w] of last) process.stdout.write(`\n== last run, --network ${net}\n${w}`);
} finally {
  await s.stop();
}
