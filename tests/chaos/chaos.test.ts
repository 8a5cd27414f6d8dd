import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startRegistry } from '@berth/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type ContainerStack,
  importBusyboxTo,
  pushBusybox,
  startContainerStack,
} from '../e2e/containers-stack.js';
import { FaultKind, type FaultRecord, runDriver, seededRandom, waitAllAnswer } from './driver.js';
import { type Check, checkLive, outcomeLines, recordExits } from './invariants.js';
import { type KeptLogs, keptLogs } from './kept-logs.js';
import { checkPodsThenClean } from './pod-invariants.js';
import { type Cri, criRuntime, type PodRecord, runPodWorker } from './pods.js';
import { runWorkload, type WorkloadRecord } from './workload.js';

// The chaos suite: a mixed workload (workload.ts through the CLI, pods.ts through the CRI socket)
// while the driver (driver.ts) kills and pauses services (the CRI gateway too), kills nats-server
// and redis-server and fills the disk; then the invariants (invariants.ts, pod-invariants.ts),
// printed one per line as HELD / BROKEN / NOT CHECKED with their figures.
// CHAOS_SECONDS sets the length (45 s: the short form in the default e2e run; `pnpm --filter
// @berth/tests run chaos` runs 600 s), CHAOS_SEED replays a run's choices (the timing of the
// workload against the faults still varies), CHAOS_DISK_FILL=1/0 forces disk fill on or off.
// The services run under the test (containers-stack.ts), not `berth up`: the driver restarts a
// victim itself, as the supervisor would, and so knows when it is back.
const SECONDS = Number(process.env.CHAOS_SECONDS ?? 45);
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
// Disk fill needs the state root on a tmpfs of its own: on by default in the long form only.
const FILL = process.env.CHAOS_DISK_FILL ? process.env.CHAOS_DISK_FILL === '1' : SECONDS > 120;
const KINDS = Object.values(FaultKind).filter((k) => FILL || k !== FaultKind.fillDisk);
// The services' logs, at info (one access line per request), kept when the run fails (kept-logs.ts).
let logs: KeptLogs | undefined;
let s: ContainerStack;
let registry: Awaited<ReturnType<typeof startRegistry>> | undefined;
let image = 'berth.test/busybox:latest';
let pullRef = '';
// The CRI's images live in its own namespace (k8s.io).
const CRI_IMAGE = 'berth.test/busybox:cri';
let cri: Cri;

beforeAll(async () => {
  logs = await keptLogs();
  s = await startContainerStack({
    logDir: logs.dir,
    logLevel: process.env.STACK_LOG_LEVEL ?? 'info',
    // Short intervals: exits whose event a fault swallowed, and pod networks whose teardown a
    // fault failed, are found again within a second.
    config: {
      services: { 'task-service': { reconcileIntervalMs: 1000 }, 'cri-gateway': { networkCollectMs: 1000 } },
    },
    cri: true,
    ...(FILL ? { stateTmpfsMb: 1024 } : {}),
  });
  image = (await s.importBusybox(image)).name;
  await importBusyboxTo(s.nc, { dir: s.root, node: s.node, namespace: 'k8s.io', name: CRI_IMAGE });
  cri = criRuntime(s.criSocket as string);
  registry = await startRegistry();
  pullRef = `${registry.host}/chaos/busybox:pull`;
  await pushBusybox(s.root, pullRef);
}, 180_000);
afterAll(async () => {
  cri?.close();
  await s?.stop();
  await registry?.stop();
  await logs?.settle();
}, 120_000);

function report(
  faults: FaultRecord[],
  rec: WorkloadRecord,
  pods: PodRecord,
  checks: Check[],
  ms: number,
): string {
  const kinds = new Map<string, number>();
  for (const f of faults) kinds.set(`${f.kind} ${f.target}`, (kinds.get(`${f.kind} ${f.target}`) ?? 0) + 1);
  const worst = faults.reduce((a, f) => Math.max(a, f.recoveryMs), 0);
  return [
    `chaos: seed ${SEED} (CHAOS_SEED=${SEED} replays the choices), ${SECONDS} s of faults, ${Math.round(ms / 1000)} s in all`,
    `faults: ${faults.length} (${[...kinds].map(([k, n]) => `${k} x${n}`).join(', ')}); slowest recovery ${worst} ms`,
    ...(FILL ? [] : ['not exercised: disk fill (CHAOS_DISK_FILL=1 or the long form)']),
    ...outcomeLines(rec, pods, checks),
  ].join('\n');
}

it(
  `holds every invariant through ${SECONDS} s of faults`,
  () => (logs as KeptLogs).run(chaosRun),
  (SECONDS + 600) * 1000,
);

/** The run itself: faults, workload and pods at once, then recovery and the invariants. */
async function chaosRun(): Promise<void> {
  const started = Date.now();
  // First, so that a run that fails before its report can still be replayed.
  console.log(`chaos: seed ${SEED} (CHAOS_SEED=${SEED})`);
  const { exits, stop: stopRecording } = recordExits(s.nc);
  const t0 = Date.now();
  const endAt = t0 + SECONDS * 1000;
  const logRoot = join(s.root, 'pod-logs');
  await mkdir(logRoot, { recursive: true });
  const [faults, rec, pods] = await Promise.all([
    runDriver(s, { rand: seededRandom(SEED), endAt, t0, kinds: KINDS, log: (l) => console.log(l) }),
    runWorkload(s, { image, pullRef, rand: seededRandom(SEED + 1), endAt, t0 }),
    runPodWorker(cri, { image: CRI_IMAGE, logRoot, rand: seededRandom(SEED + 2), endAt, t0 }),
  ]);
  // Recovery: every service answers again (the driver already brought each victim back).
  await waitAllAnswer(s);
  const fills = faults
    .filter((f) => f.kind === FaultKind.fillDisk)
    .map((f) => ({ atMs: f.atMs, endMs: f.clearedMs ?? f.atMs + f.recoveryMs }));
  const checks = await checkLive(s, rec, exits, fills);
  checks.push(...(await checkPodsThenClean(cri, pods, { ...s, redisUrl: s.redis.url }, rec.ids)));
  stopRecording();
  const text = report(faults, rec, pods, checks, Date.now() - started);
  console.log(text);
  expect(faults.length).toBeGreaterThan(0);
  expect(checks.filter((c) => c.held === false).map((c) => `${c.name}: ${c.detail}`)).toEqual([]);
}
