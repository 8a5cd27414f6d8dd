import { cp, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { connectNats } from '@berth/kit';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { importBusyboxTo } from '../e2e/containers-stack.js';
import { runBerth } from '../harness/berth.js';
import { alive, runs, type Stack, startStack, waitFor } from '../harness/stack.js';
import { pick, seededRandom } from './driver.js';
import { type Check, type CleanTarget, checkLive, outcomeLines, recordExits } from './invariants.js';
import { type KeptLogs, keptLogs } from './kept-logs.js';
import { checkPodsThenClean } from './pod-invariants.js';
import { type Cri, criRuntime, runPodWorker } from './pods.js';
import { runWorkload } from './workload.js';

// The supervisor's own restarts: a stack under `berth up` runs the chaos workload (CLI and CRI)
// while the driver SIGKILLs the `berth up` supervisor, now and then also a service while no
// supervisor watches it, and starts the supervisor again with `berth up`, as an operator or
// systemd would. Services, containers and pods must carry on; the chaos invariants must hold,
// and no process of an earlier supervisor's stack may be left beside the new one's.
// CHAOS_SUPERVISOR_SECONDS sets the length (15 s in the default e2e run, 180 s in the long form,
// `pnpm --filter @berth/tests run chaos`), CHAOS_SEED the seed.
const LONG = Number(process.env.CHAOS_SECONDS ?? 0) > 120;
const SECONDS = Number(process.env.CHAOS_SUPERVISOR_SECONDS ?? (LONG ? 180 : 15));
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const IMAGE = 'berth.test/busybox:latest';
const CRI_IMAGE = 'berth.test/busybox:cri';

let stack: Stack;
let nc: NatsConnection;
let cri: Cri;
let target: CleanTarget;
/** The logs of `berth up`'s supervisor and services (services/*.log), copied out when the run fails. */
let logs: KeptLogs | undefined;

beforeAll(async () => {
  logs = await keptLogs();
  stack = await startStack({
    config: {
      services: { 'task-service': { reconcileIntervalMs: 1000 }, 'cri-gateway': { networkCollectMs: 1000 } },
    },
  });
  nc = await connectNats({ url: stack.natsUrl, name: 'chaos-supervisor' });
  for (const [name, namespace] of [
    [IMAGE, 'default'],
    [CRI_IMAGE, 'k8s.io'],
  ] as const)
    await importBusyboxTo(nc, { dir: stack.root, node: stack.nodeId, namespace, name });
  cri = criRuntime(join(stack.runRoot, 'cri.sock'));
  target = {
    root: stack.root,
    stateRoot: stack.stateRoot,
    runRoot: stack.runRoot,
    cni: stack.cni,
    redisUrl: stack.redisUrl,
    berth: (args, o = {}) => runBerth(args, { env: stack.env, ...o }),
  };
}, 180_000);
afterAll(async () => {
  cri?.close();
  await nc?.close().catch(() => undefined);
  // Copied before stop() removes the stack's root, the logs of its last moments included.
  if (stack && logs && !logs.passed) {
    await cp(join(stack.stateRoot, 'services'), logs.dir, { recursive: true }).catch(() => undefined);
  }
  await stack?.stop();
  await logs?.settle();
}, 120_000);

interface Restart {
  atMs: number;
  /** The service also SIGKILLed while no supervisor ran, if any. */
  alsoKilled?: string;
  /** From the SIGKILL to `berth status` answering ok again. */
  recoveryMs: number;
  /** Processes (services and embedded servers) whose pid outlived the supervisor's restart. */
  kept: number;
  /** Processes that should have: every one but the service killed on purpose. */
  expected: number;
}

/** SIGKILLs the supervisor (and maybe a service), then `berth up` again; waits for status ok. */
async function restartSupervisor(rand: () => number, t0: number): Promise<Restart> {
  const before = stack.state();
  if (!before) throw new Error('no supervisor state file');
  const atMs = Date.now() - t0;
  process.kill(before.pid, 'SIGKILL');
  await waitFor('the supervisor to be gone', () => !alive(before.pid));
  let alsoKilled: string | undefined;
  const children = before.children.filter((c) => c.pid !== null);
  const services = children.filter((c) => c.kind === 'service');
  if (rand() < 0.5) {
    const victim = pick(rand, services);
    if (victim.pid !== null && runs(victim.pid, victim.marker)) {
      process.kill(victim.pid, 'SIGKILL');
      await waitFor(`${victim.name} to be gone`, () => !alive(victim.pid as number));
      alsoKilled = victim.name;
    }
  }
  const up = await stack.berth('up');
  if (up.code !== 0) throw new Error(`berth up after a supervisor kill failed (${up.code}): ${up.stderr}`);
  await stack.waitForStatus((s) => s.ok, 90_000);
  const after = stack.state();
  const pids = new Set(after?.children.map((c) => c.pid));
  const carryOn = children.filter((c) => c.name !== alsoKilled);
  return {
    atMs,
    ...(alsoKilled ? { alsoKilled } : {}),
    recoveryMs: Date.now() - t0 - atMs,
    kept: carryOn.filter((c) => pids.has(c.pid)).length,
    expected: carryOn.length,
  };
}

/** Every process the stack ever reported that still runs its program is one the supervisor lists now. */
function leftBehind(): Check {
  const now = stack.state();
  const listed = new Set([now?.pid, ...(now?.children.map((c) => c.pid) ?? [])]);
  const bad = [...stack.knownPids()].filter((pid) => !listed.has(pid) && alive(pid)).map(String);
  return {
    name: 'no process of an earlier supervisor left beside the new one',
    held: bad.length === 0,
    detail: `${stack.knownPids().size} pids seen${bad.length ? `: still running ${bad.join(', ')}` : ''}`,
  };
}

it(
  `holds every invariant through ${SECONDS} s of supervisor kills`,
  () => (logs as KeptLogs).run(supervisorRun),
  (SECONDS + 600) * 1000,
);

/** The run: the supervisor killed and started again under the workload, then the invariants. */
async function supervisorRun(): Promise<void> {
  console.log(`chaos (supervisor): seed ${SEED} (CHAOS_SEED=${SEED})`);
  const { exits, stop: stopRecording } = recordExits(nc);
  const t0 = Date.now();
  const endAt = t0 + SECONDS * 1000;
  const rand = seededRandom(SEED);
  const restarts: Restart[] = [];
  const driver = async () => {
    while (Date.now() < endAt) {
      // The pace of the kills is the fault itself, not a wait for anything.
      await pause(2000 + Math.floor(rand() * 4000));
      if (Date.now() >= endAt) break;
      restarts.push(await restartSupervisor(rand, t0));
    }
  };
  const logRoot = join(stack.root, 'pod-logs');
  await mkdir(logRoot, { recursive: true });
  const [, rec, pods] = await Promise.all([
    driver(),
    runWorkload(target, { image: IMAGE, pullRef: '', rand: seededRandom(SEED + 1), endAt, t0 }),
    runPodWorker(cri, { image: CRI_IMAGE, logRoot, rand: seededRandom(SEED + 2), endAt, t0 }),
  ]);
  await stack.waitForStatus((s) => s.ok, 60_000);
  const replaced = restarts.filter((r) => r.kept !== r.expected);
  const checks: Check[] = [
    {
      name: 'services and embedded servers carry on through supervisor restarts (adopted, not replaced)',
      held: replaced.length === 0,
      detail: `${restarts.length - replaced.length}/${restarts.length} restarts kept every process${replaced.map((r) => `; at ${r.atMs} ms ${r.kept}/${r.expected}`).join('')}`,
    },
    leftBehind(),
    ...(await checkLive(target, rec, exits)),
  ];
  checks.push(...(await checkPodsThenClean(cri, pods, target, rec.ids)));
  stopRecording();
  console.log(
    [
      `chaos (supervisor): seed ${SEED}, ${SECONDS} s, ${restarts.length} supervisor kills`,
      ...restarts.map(
        (r) =>
          `supervisor SIGKILL at ${r.atMs} ms${r.alsoKilled ? ` (and ${r.alsoKilled})` : ''}: status ok after ${r.recoveryMs} ms, ${r.kept}/${r.expected} processes kept`,
      ),
      ...outcomeLines(rec, pods, checks),
    ].join('\n'),
  );
  expect(restarts.length).toBeGreaterThan(0);
  expect(checks.filter((c) => c.held === false).map((c) => `${c.name}: ${c.detail}`)).toEqual([]);
}
