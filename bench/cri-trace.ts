/**
 * The span trees of CRI writes: a private stack from this checkout (registry mirrors as in
 * cri.ts), then crictl runs a pod and creates, starts, stops and removes containers in it, and
 * `berth trace --op` prints the last call of each RPC as a waterfall. Prints; asserts nothing.
 * Run: CRICTL=/path/to/crictl pnpm --filter @berth/bench run cri-trace
 * Env: CRICTL (required), REGISTRY (default 127.0.0.1:5000), BENCH_N (containers, default 5),
 * TRACE_OPS (default CreateContainer,StartContainer).
 */
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { startTraceStack } from './cri-trace-stack.js';

const N = Number(process.env.BENCH_N ?? 5);
const OPS = (process.env.TRACE_OPS ?? 'CreateContainer,StartContainer').split(',');
const IMAGE = 'registry.k8s.io/e2e-test-images/busybox:1.29-2';
const { root, stack, crictl, stop } = await startTraceStack('cri-trace', 'bcri-trace0');
try {
  crictl('pull', IMAGE);
  const pod = join(root, 'pod.json');
  await writeFile(
    pod,
    JSON.stringify({
      metadata: { name: 'trace-pod', namespace: 'trace', uid: 'trace-uid', attempt: 0 },
      log_directory: join(root, 'logs'),
    }),
  );
  const podId = crictl('runp', pod);
  for (let i = 0; i < N; i++) {
    const ctr = join(root, `ctr-${i}.json`);
    await writeFile(
      ctr,
      JSON.stringify({
        metadata: { name: `c${i}` },
        image: { image: IMAGE },
        command: ['sleep', '3600'],
        log_path: `c${i}.log`,
      }),
    );
    const id = crictl('create', podId, ctr, pod);
    crictl('start', id);
    crictl('stop', '-t', '0', id);
    crictl('rm', id);
  }
  process.stdout.write(
    `load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  for (const op of OPS) {
    const r = await stack.berth('trace', '--op', op);
    process.stdout.write(`\n== ${op}\n${r.stdout}${r.stderr}`);
  }
  crictl('stopp', podId);
  crictl('rmp', podId);
} finally {
  await stop();
}
