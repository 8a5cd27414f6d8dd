/**
 * The span trees of CRI writes: a private stack from this checkout (registry mirrors as in
 * cri.ts), then crictl runs a pod and creates, starts, stops and removes containers in it, and
 * `berth trace --op` prints the last call of each RPC as a waterfall. Prints; asserts nothing.
 * Run: CRICTL=/path/to/crictl pnpm --filter @berth/bench run cri-trace
 * Env: CRICTL (required), REGISTRY (default 127.0.0.1:5000), BENCH_N (containers, default 5),
 * TRACE_OPS (default CreateContainer,StartContainer).
 */
import { containerRounds, startTraceStack } from './cri-trace-stack.js';
import { loadText } from './measure.js';

const N = Number(process.env.BENCH_N ?? 5);
const OPS = (process.env.TRACE_OPS ?? 'CreateContainer,StartContainer').split(',');
const IMAGE = 'registry.k8s.io/e2e-test-images/busybox:1.29-2';
const { root, stack, crictl, stop } = await startTraceStack('cri-trace', 'bcri-trace0');
try {
  crictl('pull', IMAGE);
  const { podId } = containerRounds({ root, crictl }, { podName: 'trace', image: IMAGE, rounds: N });
  process.stdout.write(`load ${loadText()}\n`);
  for (const op of OPS) {
    const r = await stack.berth('trace', '--op', op);
    process.stdout.write(`\n== ${op}\n${r.stdout}${r.stderr}`);
  }
  crictl('stopp', podId);
  crictl('rmp', podId);
} finally {
  await stop();
}
