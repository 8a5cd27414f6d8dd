/**
 * Where the shim's part of StartContainer goes, phase by phase: a private trace stack (see
 * cri-trace-stack.ts), one pod, then BENCH_N rounds of crictl create + start + stop + rm of a
 * busybox container, and the medians (p10-p90) of the phases the shim logs for each create it
 * started ("task created and started": check, prepare, mount, user, write, monitor, start; see
 * createTask in packages/shim/src/domain/task-bundle.ts: `check` is the request's checks plus the
 * task's reservation in Redis and the wait for its turn, `monitor` conmon and runc create plus the
 * task's record). The phases are the shim's own clock, so
 * crictl's process start is outside every figure. Prints; asserts nothing.
 * Run: CRICTL=/path/to/crictl pnpm --filter @berth/bench run start-phases
 * Env: CRICTL (required, cri-tools v1.26.1), REGISTRY (default 127.0.0.1:5000, serving the e2e
 * busybox and the pause image), BENCH_N (rounds, default 30).
 */
import { readFileSync } from 'node:fs';
import { BENCH_IMAGES } from './cri-critest.js';
import { containerRounds, startTraceStack } from './cri-trace-stack.js';
import { loadText, pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 30);
const [IMAGE] = BENCH_IMAGES as [string];

const { root, stack, crictl, stop } = await startTraceStack('start-phases', 'bcri-phase0');
try {
  crictl('pull', IMAGE);
  const before = loadText();
  const { podId: pod } = containerRounds({ root, crictl }, { podName: 'phases', image: IMAGE, rounds: N });
  const after = loadText();
  crictl('stopp', pod);
  crictl('rmp', pod);
  const shim = (stack.state()?.children ?? []).find((c) => c.name === 'shim');
  if (!shim) throw new Error('the stack has no shim');
  const phases = new Map<string, number[]>();
  for (const line of readFileSync(shim.logFile, 'utf8').split('\n')) {
    if (!line.includes('"task created and started"')) continue;
    const ms = (JSON.parse(line) as { ms?: Record<string, number> }).ms ?? {};
    for (const [k, v] of Object.entries(ms)) phases.set(k, [...(phases.get(k) ?? []), v]);
  }
  // The pod's pause container is the first create logged: only the last N are the containers'.
  const f = (n: number) => n.toFixed(1);
  process.stdout.write(`${N} rounds, load ${before} -> ${after}; shim phases, ms: median (p10-p90), n\n`);
  for (const [k, xs] of phases) {
    const own = xs.slice(-N);
    process.stdout.write(
      `  ${k.padEnd(8)} ${f(pct(own, 50))} (${f(pct(own, 10))}-${f(pct(own, 90))}), ${own.length}\n`,
    );
  }
} finally {
  await stop();
}
