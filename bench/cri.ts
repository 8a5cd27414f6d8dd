/**
 * CRI benchmark (issue 9): critest's benchmark mode against berth's CRI socket and against a
 * private containerd's, one after the other in one run, then one table of per-RPC medians (ms)
 * and the ratio berth / containerd. Prints figures; asserts nothing.
 *
 * Both runtimes get the same things: registry mirrors for registry.k8s.io, gcr.io, public.ecr.aws
 * and docker.io pointing at REGISTRY (which must hold critest's images), the sandbox image
 * registry.k8s.io/pause:3.6 from it, a private CNI conf dir with the same bridge conflist (own
 * bridge, own free /16), and the same images pre-pulled. Everything lives under one temp dir;
 * the stack, containerd and the bridges are removed at the end (the dir too when both runs pass).
 *
 * Run: CRITEST=/path/to/critest pnpm --filter @berth/bench run cri
 * Env: CRITEST (required: cri-tools v1.26 critest), PARAMS (critest's benchmarking params file;
 * default 100 pods, 100 containers, 50 images, one at a time), REGISTRY (default 127.0.0.1:5000),
 * BENCH_N (replaces the three counts, for a quick run), BENCH_FIRST=containerd (run containerd first),
 * BENCH_GRPC_SERVER (the gateway's services.cri-gateway.grpcServer: berth, the default, or grpc-js).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { startStack } from '../tests/harness/stack.js';
import { containerdInstalled, startContainerd } from './containerd.js';
import {
  BENCH_IMAGES,
  type CritestRun,
  OPERATIONS,
  paramsFile,
  prePull,
  runCritest,
  sweepPods,
} from './cri-critest.js';
import { freeSubnets, linkExists, makeNetwork, removeNetwork } from './cri-net.js';

const CRITEST = process.env.CRITEST;
const REGISTRY = process.env.REGISTRY ?? '127.0.0.1:5000';
const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.6';
const BRIDGES = { berth: 'bcri-berth0', containerd: 'bcri-ctd0' } as const;

if (!CRITEST) {
  process.stderr.write('set CRITEST to a critest binary (cri-tools v1.26.1); see docs/benchmarks.md\n');
  process.exit(2);
}
if (!containerdInstalled()) {
  process.stderr.write('containerd is not installed (apt-get install containerd): nothing to compare with\n');
  process.exit(2);
}
const reg = await fetch(`http://${REGISTRY}/v2/`).catch((err: Error) => err);
if (reg instanceof Error || !reg.ok) {
  process.stderr.write(`no registry answers on http://${REGISTRY}/v2/ (set REGISTRY)\n`);
  process.exit(2);
}
for (const b of Object.values(BRIDGES)) {
  if (linkExists(b)) throw new Error(`interface ${b} exists already: another benchmark runs, or remove it`);
}

const mirror = [`http://${REGISTRY}`];
const mirrors = Object.fromEntries(
  ['registry.k8s.io', 'gcr.io', 'public.ecr.aws', 'docker.io'].map((h) => [h, mirror]),
);
const root = await mkdtemp(join(tmpdir(), 'berth-cri-bench-'));
const params = await paramsFile(root, process.env.PARAMS, process.env.BENCH_N);
const counts = [...readFileSync(params, 'utf8').matchAll(/^(pods|containers|images)Number:\s*(\d+)/gm)];
const [berthSubnet, ctdSubnet] = freeSubnets(2) as [string, string];
const berthNet = await makeNetwork(
  join(root, 'berth'),
  'bench-berth',
  BRIDGES.berth,
  berthSubnet,
  'berth-subnet',
);
const ctdNet = await makeNetwork(
  join(root, 'containerd'),
  'bench-ctd',
  BRIDGES.containerd,
  ctdSubnet,
  'per-pod',
);
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const loads: string[] = [`start ${load()}`];
const log = (s: string) => process.stdout.write(`${s}\n`);

/** Pre-pulls, runs critest, sweeps what a failed sample left; logs the outcome. */
async function bench(name: string, socket: string): Promise<CritestRun> {
  await prePull(socket, [SANDBOX_IMAGE, ...BENCH_IMAGES]);
  log(`${name}: critest running (load ${load()})`);
  const run = await runCritest(CRITEST as string, socket, params, join(root, name, 'critest'));
  loads.push(`after ${name} ${load()}`);
  const left = await sweepPods(socket);
  log(
    `${name}: critest exited ${run.exitCode}${run.exitCode ? ` (log ${run.log})` : ''}${left ? `, ${left} pods swept` : ''}`,
  );
  return run;
}

/** The berth side: a private stack from this checkout, measured, then stopped. */
async function runBerth(): Promise<CritestRun> {
  const stack = await startStack({
    config: {
      services: {
        'image-service': { mirrors },
        'cri-gateway': {
          sandboxImage: SANDBOX_IMAGE,
          ...(process.env.BENCH_GRPC_SERVER ? { grpcServer: process.env.BENCH_GRPC_SERVER } : {}),
        },
        shim: { cniConfDir: berthNet.confDir, cniInstallDefault: false },
      },
    },
  });
  try {
    return await bench('berth', hostLayout(stack).run.criSocket);
  } finally {
    await stack.stop();
  }
}

/** The containerd side: a private containerd with its CRI plugin, measured, then stopped. */
async function runContainerd(): Promise<CritestRun> {
  const containerd = await startContainerd(join(root, 'containerd'), {
    mirrors,
    cniConfDir: ctdNet.confDir,
    sandboxImage: SANDBOX_IMAGE,
  });
  try {
    return await bench('containerd', containerd.sock);
  } finally {
    await containerd.stop();
  }
}

let berth: CritestRun | undefined;
let ctd: CritestRun | undefined;
try {
  // Which goes first is a choice: on a shared machine the load moves between the two halves.
  if (process.env.BENCH_FIRST === 'containerd') {
    ctd = await runContainerd();
    berth = await runBerth();
  } else {
    berth = await runBerth();
    ctd = await runContainerd();
  }
} finally {
  await removeNetwork(berthNet);
  await removeNetwork(ctdNet);
  if (berth?.exitCode === 0 && ctd?.exitCode === 0) await rm(root, { recursive: true, force: true });
  else log(`logs and results kept in ${root}`);
}

const f = (n: number | undefined, w = 11) => (n === undefined ? '-' : n.toFixed(2)).padStart(w);
log(
  `\nCRI medians in ms: critest -benchmark, ${counts.map((m) => `${m[2]} ${m[1]}`).join(', ')}, one at a time`,
);
log(`load average: ${loads.join(', ')}`);
log(
  `${'RPC'.padEnd(18)}${'containerd'.padStart(11)}${'berth'.padStart(11)}${'ratio'.padStart(8)}${'n'.padStart(6)}`,
);
for (const [op, rpc] of OPERATIONS) {
  const c = ctd?.medians.get(op);
  const b = berth?.medians.get(op);
  if (c === undefined && b === undefined) continue;
  const ratio = c !== undefined && b !== undefined ? `${(b / c).toFixed(2)}x` : '-';
  const n = berth?.samples.get(op) ?? ctd?.samples.get(op) ?? 0;
  log(`${rpc.padEnd(18)}${f(c)}${f(b)}${ratio.padStart(8)}${String(n).padStart(6)}`);
}
