/**
 * The span trees of CRI writes: a private stack from this checkout (registry mirrors as in
 * cri.ts), then crictl runs a pod and creates, starts, stops and removes containers in it, and
 * `berth trace --op` prints the last call of each RPC as a waterfall. Prints; asserts nothing.
 * Run: CRICTL=/path/to/crictl pnpm --filter @berth/bench run cri-trace
 * Env: CRICTL (required), REGISTRY (default 127.0.0.1:5000), BENCH_N (containers, default 5),
 * TRACE_OPS (default CreateContainer,StartContainer).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { startStack } from '../tests/harness/stack.js';
import { freeSubnets, makeNetwork, removeNetwork } from './cri-net.js';

const CRICTL = process.env.CRICTL;
if (!CRICTL) {
  process.stderr.write('set CRICTL to a crictl binary (cri-tools v1.26.1)\n');
  process.exit(2);
}
const REGISTRY = process.env.REGISTRY ?? '127.0.0.1:5000';
const N = Number(process.env.BENCH_N ?? 5);
const OPS = (process.env.TRACE_OPS ?? 'CreateContainer,StartContainer').split(',');
const IMAGE = 'registry.k8s.io/e2e-test-images/busybox:1.29-2';
const mirrors = Object.fromEntries(
  ['registry.k8s.io', 'gcr.io', 'public.ecr.aws', 'docker.io'].map((h) => [h, [`http://${REGISTRY}`]]),
);

const root = await mkdtemp(join(tmpdir(), 'berth-cri-trace-'));
const [subnet] = freeSubnets(1) as [string];
const net = await makeNetwork(join(root, 'net'), 'trace-net', 'bcri-trace0', subnet, 'berth-subnet');
const stack = await startStack({
  config: {
    services: {
      'image-service': { mirrors },
      'cri-gateway': { sandboxImage: 'registry.k8s.io/pause:3.6' },
      shim: { cniConfDir: net.confDir, cniInstallDefault: false },
    },
  },
});
try {
  const socket = `unix://${hostLayout(stack).run.criSocket}`;
  const crictl = (...args: string[]): string => {
    const r = spawnSync(
      CRICTL,
      ['--timeout', '60s', '--runtime-endpoint', socket, '--image-endpoint', socket, ...args],
      {
        encoding: 'utf8',
      },
    );
    if (r.status !== 0) throw new Error(`crictl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  crictl('pull', IMAGE);
  crictl('pull', 'registry.k8s.io/pause:3.6');
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
  await stack.stop();
  await removeNetwork(net);
  await rm(root, { recursive: true, force: true });
}
