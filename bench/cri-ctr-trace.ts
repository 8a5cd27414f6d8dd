/**
 * Where critest's benchmark spends its time, call by call as critest makes them (back to back, so
 * each call meets what the one before left running): a private trace stack (see
 * cri-trace-stack.ts), one critest -benchmark run with BENCH_N samples of each benchmark (critest
 * -benchmark runs them all; its container lifecycle is RunPodSandbox, then the timed ImageStatus +
 * CreateContainer, StartContainer, ContainerStatus, StopContainer, RemoveContainer, then
 * StopPodSandbox and RemovePodSandbox), then critest's medians and the pooled span trees of each
 * RPC in TRACE_OPS (span-pool.ts). Prints; asserts nothing.
 * Run: CRICTL=/path/to/crictl CRITEST=/path/to/critest pnpm --filter @berth/bench run cri-ctr-trace
 * Env: CRICTL, CRITEST (both required, cri-tools v1.26.1), REGISTRY (default 127.0.0.1:5000),
 * BENCH_N (samples, default 30), TRACE_OPS (default ImageStatus,CreateContainer,StartContainer,
 * RemoveContainer), BENCH_SPANS (a file: every span read is written there as JSON),
 * BENCH_CRI_TIMING (a file: the gateway's per-call phases, as in cri.ts).
 */
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { readSpans, type SpanRecord } from '@berth/kit/tracing';
import { BENCH_IMAGES, paramsFile, prePull, runCritest, sweepPods } from './cri-critest.js';
import { startTraceStack } from './cri-trace-stack.js';
import { loadText } from './measure.js';
import { cpuMs, poolTable, tracesOf } from './span-pool.js';

const CRITEST = process.env.CRITEST;
if (!CRITEST) {
  process.stderr.write('set CRITEST to a critest binary (cri-tools v1.26.1)\n');
  process.exit(2);
}
const N = process.env.BENCH_N ?? '30';
const OPS = (process.env.TRACE_OPS ?? 'ImageStatus,CreateContainer,StartContainer,RemoveContainer').split(
  ',',
);

// Not BERTH_CRI_TIMING itself: this process loads the gateway's package too (see cri.ts).
const { root, stack, stop } = await startTraceStack(
  'cri-ctr-trace',
  'bcri-ctrace0',
  process.env.BENCH_CRI_TIMING ? { BERTH_CRI_TIMING: process.env.BENCH_CRI_TIMING } : undefined,
);
try {
  const socket = hostLayout(stack).run.criSocket;
  await prePull(socket, BENCH_IMAGES);
  const params = await paramsFile(root, undefined, N);
  const procs = (stack.state()?.children ?? []).filter((c) => c.pid !== null);
  const cpu0 = procs.map((c) => cpuMs(c.pid ?? 0));
  const before = loadText();
  const t0 = Date.now();
  const run = await runCritest(CRITEST, socket, params, join(root, 'critest'));
  const wall = Date.now() - t0;
  const left = await sweepPods(socket);
  if (run.exitCode)
    process.stdout.write(
      `critest's log, last lines:\n${readFileSync(run.log, 'utf8').split('\n').slice(-40).join('\n')}\n`,
    );
  process.stdout.write(
    `critest exited ${run.exitCode}${left ? `, ${left} pods swept` : ''}; ${N} samples in ${wall} ms, load ${before} -> ${loadText()}\n`,
  );
  process.stdout.write(
    `critest medians (ms): ${[...run.medians].map(([op, ms]) => `${op} ${ms.toFixed(2)}`).join(', ')}\n`,
  );
  // Each service's CPU per sample (pod run/stop/remove included): where the work, not the wait, is.
  const per = procs.map(
    (c, i) => `${c.name} ${((cpuMs(c.pid ?? 0) - (cpu0[i] ?? 0)) / Number(N)).toFixed(1)}`,
  );
  process.stdout.write(`CPU ms per sample: ${per.join(', ')}\n`);
  // The span store is written in batches: wait for the last call's spans.
  const want = (spans: SpanRecord[], op: string) =>
    spans.filter((s) => !s.parentSpanId && s.name.endsWith(`/${op}`)).length;
  let spans: SpanRecord[] = [];
  for (let tries = 0; tries < 100; tries++) {
    spans = await readSpans(hostLayout(stack).traces);
    if (OPS.every((op) => want(spans, op) >= Number(N))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (process.env.BENCH_SPANS) await writeFile(process.env.BENCH_SPANS, JSON.stringify(spans));
  for (const op of OPS) {
    // The first call of each loads code: not counted.
    const traces = tracesOf(spans, op).slice(1);
    process.stdout.write(`\n== ${op}: ${traces.length} traces, medians in ms (start, duration)\n`);
    process.stdout.write(poolTable(traces));
  }
} finally {
  await stop();
}
