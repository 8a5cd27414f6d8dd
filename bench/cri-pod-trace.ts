/**
 * Where RunPodSandbox, StopPodSandbox and RemovePodSandbox spend their time, over many calls: a
 * private stack from this checkout (registry mirrors and a private CNI conf dir, as cri-trace.ts),
 * crictl runs, stops and removes BENCH_N pods one after the other, then the span store's traces
 * of each RPC are pooled: per span (service, name and its occurrence in the trace) the median
 * start from the call's own start and the median duration. One trace is a sample of one; the
 * medians of twenty say which step is on the critical path. Prints; asserts nothing.
 * Run: CRICTL=/path/to/crictl pnpm --filter @berth/bench run cri-pod-trace
 * Env: CRICTL (required), REGISTRY (default 127.0.0.1:5000), BENCH_N (pods, default 20),
 * BENCH_SPANS (a file: every span read is written there as JSON).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { readSpans, type SpanRecord } from '@berth/kit/tracing';
import { startTraceStack } from './cri-trace-stack.js';
import { loadText } from './measure.js';
import { cpuMs, poolTable, tracesOf } from './span-pool.js';

const N = Number(process.env.BENCH_N ?? 20);
const OPS = ['RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox'];

const { root, stack, crictl, stop } = await startTraceStack('cri-pod-trace', 'bcri-ptrace0');
try {
  const before = loadText();
  const procs = (stack.state()?.children ?? []).filter((c) => c.pid !== null);
  const cpu0 = procs.map((c) => cpuMs(c.pid ?? 0));
  // One pod first, not counted: the first call loads code and the sandbox image's record.
  for (let i = -1; i < N; i++) {
    const pod = join(root, `pod-${i}.json`);
    await writeFile(
      pod,
      JSON.stringify({
        metadata: { name: `trace-pod-${i}`, namespace: 'trace', uid: `trace-uid-${i}`, attempt: 0 },
        log_directory: join(root, 'logs'),
      }),
    );
    const t0 = Date.now();
    const id = crictl('runp', pod);
    crictl('stopp', id);
    crictl('rmp', id);
    if (i === -1) process.stdout.write(`warm-up pod ${Date.now() - t0} ms\n`);
  }
  process.stdout.write(`${N} pods, load ${before} -> ${loadText()}\n`);
  // Each service's CPU over the N pods (warm-up included): where the work, not the wait, is.
  const perPod = procs.map(
    (c, i) => `${c.name} ${((cpuMs(c.pid ?? 0) - (cpu0[i] ?? 0)) / (N + 1)).toFixed(1)}`,
  );
  process.stdout.write(`CPU ms per pod (run, stop, remove): ${perPod.join(', ')}\n`);
  // The span store is written in batches: wait for the last call's spans.
  const want = (spans: SpanRecord[], op: string) =>
    spans.filter((s) => !s.parentSpanId && s.name.endsWith(`/${op}`)).length;
  let spans: SpanRecord[] = [];
  for (let tries = 0; tries < 100; tries++) {
    spans = await readSpans(hostLayout(stack).traces);
    if (OPS.every((op) => want(spans, op) >= N + 1)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (process.env.BENCH_SPANS) await writeFile(process.env.BENCH_SPANS, JSON.stringify(spans));
  for (const op of OPS) {
    const traces = tracesOf(spans, op).slice(1); // the warm-up pod's
    process.stdout.write(`\n== ${op}: ${traces.length} traces, medians in ms (start, duration)\n`);
    process.stdout.write(poolTable(traces));
  }
} finally {
  await stop();
}
