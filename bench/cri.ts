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
 * BENCH_GRPC_SERVER (the gateway's services.cri-gateway.grpcServer: berth, the default, or grpc-js),
 * BENCH_COHOSTED=1 (`berth up --cohosted`: every service in one process), BENCH_SAME_NODE_CALLS
 * (`nats` or `socket`: the stack's sameNodeCalls, how its services call each other), BENCH_ROUNDS (default 1: one run each; K > 1 keeps both runtimes up and alternates K critest
 * runs of each, the first runtime changing every round, and pools every run's samples: the
 * load of a shared machine then weighs on both alike), BENCH_CRI_TIMING=<file> (the gateway's
 * per-call phases, BERTH_CRI_TIMING of packages/cri-gateway/src/grpc/call-timing.ts, written there
 * when the stack stops), BENCH_SKIP (critest's --ginkgo.skip: leaves out the benchmarks whose
 * names match, e.g. "Container|Pod" runs only the image lifecycle and ListImages), BENCH_GATEWAY_V8
 * (the gateway's services.cri-gateway.v8Flags, space-separated, e.g. "--optimize-for-size
 * --liftoff-only --cpu-prof --cpu-prof-interval=100": a CPU profile written in bench/ at its exit;
 * the timing file's per-call `at` times line its samples up with each call).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { startStack } from '../tests/harness/stack.js';
import { containerdInstalled, startContainerd } from './containerd.js';
import {
  BENCH_IMAGES,
  type CritestRun,
  median,
  OPERATIONS,
  paramsFile,
  prePull,
  runCritest,
  sweepPods,
} from './cri-critest.js';
import { freeSubnets, linkExists, makeNetwork, removeNetwork } from './cri-net.js';
import { loadText } from './measure.js';

const CRITEST = process.env.CRITEST;
const REGISTRY = process.env.REGISTRY ?? '127.0.0.1:5000';
const SANDBOX_IMAGE = 'registry.k8s.io/pause:3.6';
const SKIP = process.env.BENCH_SKIP || undefined;
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
const loads: string[] = [`start ${loadText()}`];
const log = (s: string) => process.stdout.write(`${s}\n`);
// Not BERTH_CRI_TIMING itself: this process loads the gateway's package too and would write its
// own (empty) timings over the gateway's at exit.
const stackEnv = {
  ...(process.env.BENCH_CRI_TIMING ? { env: { BERTH_CRI_TIMING: process.env.BENCH_CRI_TIMING } } : {}),
  ...(process.env.BENCH_COHOSTED === '1' ? { upArgs: ['--cohosted'] } : {}),
};

/** BENCH_SAME_NODE_CALLS=nats|socket: the stack's sameNodeCalls (default: the stack's own default). */
const sameNodeCalls = process.env.BENCH_SAME_NODE_CALLS
  ? { sameNodeCalls: process.env.BENCH_SAME_NODE_CALLS }
  : {};

/** Pre-pulls, runs critest, sweeps what a failed sample left; logs the outcome. */
async function bench(name: string, socket: string): Promise<CritestRun> {
  await prePull(socket, [SANDBOX_IMAGE, ...BENCH_IMAGES]);
  log(`${name}: critest running (load ${loadText()})`);
  const run = await runCritest(CRITEST as string, socket, params, join(root, name, 'critest'), SKIP);
  loads.push(`after ${name} ${loadText()}`);
  const left = await sweepPods(socket);
  log(
    `${name}: critest exited ${run.exitCode}${run.exitCode ? ` (log ${run.log})` : ''}${left ? `, ${left} pods swept` : ''}`,
  );
  return run;
}

/** The berth side: a private stack from this checkout, measured, then stopped. */
async function runBerth(): Promise<CritestRun> {
  const stack = await startStack({
    ...stackEnv,
    config: {
      ...sameNodeCalls,
      services: {
        'image-service': { mirrors },
        'cri-gateway': {
          sandboxImage: SANDBOX_IMAGE,
          ...(process.env.BENCH_GATEWAY_V8 ? { v8Flags: process.env.BENCH_GATEWAY_V8.split(' ') } : {}),
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

/** Both runtimes up at once, critest runs alternating between them for `rounds` rounds. */
async function runRounds(rounds: number): Promise<[berth: CritestRun, ctd: CritestRun]> {
  const stack = await startStack({
    ...stackEnv,
    config: {
      ...sameNodeCalls,
      services: {
        'image-service': { mirrors },
        'cri-gateway': { sandboxImage: SANDBOX_IMAGE },
        shim: { cniConfDir: berthNet.confDir, cniInstallDefault: false },
      },
    },
  });
  const containerd = await startContainerd(join(root, 'containerd'), {
    mirrors,
    cniConfDir: ctdNet.confDir,
    sandboxImage: SANDBOX_IMAGE,
  }).catch(async (err: unknown) => {
    await stack.stop();
    throw err;
  });
  const sockets = { berth: hostLayout(stack).run.criSocket, containerd: containerd.sock };
  const runs: Record<keyof typeof sockets, CritestRun[]> = { berth: [], containerd: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      const order =
        (r % 2 === 0) === (process.env.BENCH_FIRST === 'containerd')
          ? (['containerd', 'berth'] as const)
          : (['berth', 'containerd'] as const);
      for (const name of order) {
        // Again every round: a run's image benchmark may have removed one.
        await prePull(sockets[name], [SANDBOX_IMAGE, ...BENCH_IMAGES]);
        log(`round ${r + 1}: ${name} critest running (load ${loadText()})`);
        const run = await runCritest(
          CRITEST as string,
          sockets[name],
          params,
          join(root, name, `critest-${r + 1}`),
          SKIP,
        );
        loads.push(`after ${name} ${r + 1} ${loadText()}`);
        const left = await sweepPods(sockets[name]);
        log(
          `round ${r + 1}: ${name} critest exited ${run.exitCode}${run.exitCode ? ` (log ${run.log})` : ''}${left ? `, ${left} pods swept` : ''}`,
        );
        runs[name].push(run);
      }
    }
  } finally {
    await containerd.stop();
    await stack.stop();
  }
  return [pooled(runs.berth), pooled(runs.containerd)];
}

/** One run of several: every sample pooled, its medians over all of them; exit code the worst. */
function pooled(runs: CritestRun[]): CritestRun {
  const values = new Map<string, number[]>();
  for (const run of runs)
    for (const [op, xs] of run.values) values.set(op, [...(values.get(op) ?? []), ...xs]);
  return {
    values,
    medians: new Map([...values].map(([op, xs]) => [op, median(xs)])),
    samples: new Map([...values].map(([op, xs]) => [op, xs.length])),
    exitCode: Math.max(0, ...runs.map((r) => r.exitCode)),
    log: runs.map((r) => r.log).join(', '),
  };
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1)
  throw new Error(`BENCH_ROUNDS "${process.env.BENCH_ROUNDS}" must be a positive integer`);

let berth: CritestRun | undefined;
let ctd: CritestRun | undefined;
try {
  // Which goes first is a choice: on a shared machine the load moves between the two halves.
  if (ROUNDS > 1) [berth, ctd] = await runRounds(ROUNDS);
  else if (process.env.BENCH_FIRST === 'containerd') {
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
  `\nCRI medians in ms: critest -benchmark, ${counts.map((m) => `${m[2]} ${m[1]}`).join(', ')}, one at a time${ROUNDS > 1 ? `, ${ROUNDS} alternating rounds pooled` : ''}`,
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
