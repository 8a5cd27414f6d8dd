/**
 * The invariants of the CRI pods after the chaos: every pod the gateway lists is whole (ready with
 * its pause container running and an IP, or not ready with nothing running), every acknowledged
 * pod is there and every removed one gone, each started container's exit code and CRI log are what
 * it ran; then every pod is stopped and removed through CRI, so the leftover checks
 * (invariants.ts checkClean) also cover what pods leave: pause containers, netns, IP leases.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { until } from '../e2e/containers-stack.js';
import {
  type Check,
  type CleanTarget,
  checkClean,
  runcList,
  taskOf,
  UNFINISHED_WAIT_MS,
  verdict,
} from './invariants.js';
import { type Cri, grpcCode, type PodRecord } from './pods.js';

const NOT_FOUND = 5;

interface PodStatus {
  id: string;
  state: string;
  metadata: { name: string };
  network?: { ip?: string };
}
interface CtrStatus {
  id: string;
  state: string;
  exit_code: number;
  reason?: string;
  log_path?: string;
}

async function listPods(cri: Cri): Promise<PodStatus[]> {
  const ids = (await cri.call<{ items: { id: string }[] }>('ListPodSandbox', {})).items.map((p) => p.id);
  const out: PodStatus[] = [];
  for (const id of ids) {
    const st = await cri
      .call<{ status: PodStatus }>('PodSandboxStatus', { pod_sandbox_id: id })
      .catch((e: unknown) => {
        if (grpcCode(e) === NOT_FOUND) return undefined; // removed between the two calls
        throw e;
      });
    if (st) out.push(st.status);
  }
  return out;
}

/** The CRI log's stdout lines (`<time> stdout F <text>`), in order. */
function logLines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .filter((f) => f[1] === 'stdout')
    .map((f) => f.slice(3).join(' '));
}

/**
 * Checks the pods on the live stack. `runc` is runc's list (id -> status) over every namespace:
 * the pause container of a pod runs under the pod's id.
 */
export async function checkPods(
  cri: Cri,
  rec: PodRecord,
  runc: () => Map<string, string>,
  /** berth's own word on a pod's pause task (status, exit code, reason), to say how a pod broke. */
  taskOf?: (id: string) => Promise<string>,
): Promise<Check[]> {
  const checks: Check[] = [];
  let pods: PodStatus[] = [];
  let procs = new Map<string, string>();
  /** The pods judged broken: id and how. */
  let broken: { id: string; how: string }[] = [];
  const judge = async () => {
    pods = await listPods(cri);
    procs = runc();
    broken = [];
    for (const p of pods) {
      const pause = procs.get(p.id);
      if (p.state === 'SANDBOX_READY' && (pause !== 'running' || !p.network?.ip))
        broken.push({
          id: p.id,
          how: `${p.metadata.name} ready, pause ${pause ?? 'absent'}, ip "${p.network?.ip ?? ''}"`,
        });
      if (p.state !== 'SANDBOX_READY' && pause === 'running')
        broken.push({ id: p.id, how: `${p.metadata.name} ${p.state} but its pause container runs` });
    }
    return broken.length === 0;
  };
  // A RunPodSandbox that failed half-way, its undo failing too (a service down), is finished by
  // the gateway's collection pass (every second in the chaos stacks). One whose task-service was
  // killed between the shim's start of the pause and the task's record keeps its pause running
  // under a container lock no one renews: the reconcile drops it once that lock expired. So the
  // pods are judged once both had their turns (as the CLI's containers, see psEqualsRunc).
  await until('every listed pod to be whole', judge, UNFINISHED_WAIT_MS).catch(() => false);
  // berth's own word on each broken pod's pause task says how it broke.
  const brokenHow = await Promise.all(
    broken.map(async (b) =>
      taskOf ? `${b.how}, task ${await taskOf(b.id).catch((e: Error) => e.message)}` : b.how,
    ),
  );
  const byId = new Map(pods.map((p) => [p.id, p]));
  // A pod whose RunPodSandbox failed may be listed (kubelet would remove it): then it is held
  // to the same wholeness as the others.
  const unacked = new Set(rec.pods.filter((p) => !p.podId).map((p) => p.name));
  const listedUnacked = pods.filter((p) => unacked.has(p.metadata.name)).length;
  checks.push(
    verdict(
      'every listed pod whole',
      brokenHow,
      `${pods.length} pods listed (${listedUnacked} of ${unacked.size} whose RunPodSandbox failed)`,
    ),
  );

  // A pod that was sent StopPodSandbox may be stopped in part even when the stop failed (see
  // PodRun.stopSent), but a stop removes nothing: until one succeeds it must still be listed
  // (whole, as above). A failed RemovePodSandbox may have removed the pod in part, so not after.
  const acked = rec.pods.filter((p) => p.podId && !p.stopSent);
  const lost = acked.filter((p) => byId.get(p.podId)?.state !== 'SANDBOX_READY');
  const stopping = rec.pods.filter((p) => p.stopSent && !p.stopped);
  const vanished = stopping.filter((p) => !byId.has(p.podId));
  const how = new Map<string, string>();
  for (const p of lost) how.set(p.podId, taskOf ? await taskOf(p.podId).catch((e: Error) => e.message) : '');
  checks.push(
    verdict(
      'every acknowledged pod present and ready',
      [
        ...vanished.map((p) => `${p.name} ${p.podId.slice(0, 12)}: gone, though never removed`),
        ...lost.map(
          (p) =>
            `${p.name} ${p.podId.slice(0, 12)} (run at ${p.atMs} ms): ${byId.get(p.podId)?.state ?? 'gone'}, runc ${procs.get(p.podId) ?? 'absent'}${how.get(p.podId) ? `, task ${how.get(p.podId)}` : ''}`,
        ),
      ],
      `${acked.length - lost.length}/${acked.length} ready, ${stopping.length - vanished.length}/${stopping.length} whose stop failed still listed`,
    ),
  );
  const removed = rec.pods.filter((p) => p.removed);
  checks.push(
    verdict(
      'removed pods stay removed',
      removed.filter((p) => byId.has(p.podId)).map((p) => p.name),
      `${removed.length} removed`,
    ),
  );

  // Exit codes and logs of the started containers of pods never sent a stop (a stop kills them).
  const started = rec.pods.filter((p) => p.started && !p.stopSent);
  const status = new Map<string, CtrStatus>();
  const settled = await until(
    'every started CRI container to exit',
    async () => {
      for (const p of started) {
        if (status.get(p.ctrId)?.state === 'CONTAINER_EXITED') continue;
        const st = await cri.call<{ status: CtrStatus }>('ContainerStatus', { container_id: p.ctrId });
        status.set(p.ctrId, st.status);
      }
      return started.every((p) => status.get(p.ctrId)?.state === 'CONTAINER_EXITED');
    },
    90_000,
  ).catch(() => false);
  const wrong = started
    .filter(
      (p) => status.get(p.ctrId)?.state !== 'CONTAINER_EXITED' || status.get(p.ctrId)?.exit_code !== p.code,
    )
    .map((p) => {
      const st = status.get(p.ctrId);
      return `${p.name} (run at ${p.atMs} ms) wanted exit ${p.code}, got ${st?.state ?? 'no status'} ${st?.exit_code ?? ''} ${st?.reason ?? ''}`.trimEnd();
    });
  checks.push(
    verdict(
      'ContainerStatus exit codes match what ran',
      wrong,
      `${started.length - wrong.length}/${started.length} right${settled ? '' : ' (not all exited in 90 s)'}`,
    ),
  );
  const logBad: string[] = [];
  for (const p of started) {
    const got = logLines(join(rec.logRoot, p.name, 'batch', '0.log'));
    const want = Array.from({ length: p.lines }, (_, i) => `line-${i + 1}`);
    if (got.join('\n') !== want.join('\n')) logBad.push(`${p.name}: ${got.length}/${p.lines} lines`);
  }
  checks.push(
    verdict(
      'no CRI log line lost',
      logBad,
      `${started.length - logBad.length}/${started.length} logs complete`,
    ),
  );
  return checks;
}

/**
 * Stops and removes every pod through CRI, as the kubelet would once they are deleted; returns
 * the check that CRI then lists nothing. `ids` collects the pods' and containers' ids for the
 * cgroup leftover check. A pod whose RunPodSandbox failed (`failedRuns`, by name) may be listed
 * and then go before its stop: the gateway's collector finishes the undo of such a run
 * (PodRuntime.collectNetworks), so NOT_FOUND is its answer then, not a failure.
 */
export async function removeAllPods(cri: Cri, ids: Set<string>, failedRuns: Set<string>): Promise<Check> {
  const bad: string[] = [];
  const pods = (await cri.call<{ items: PodStatus[] }>('ListPodSandbox', {})).items;
  const ctrs = (await cri.call<{ containers: { id: string }[] }>('ListContainers', {})).containers;
  for (const c of ctrs) ids.add(c.id);
  for (const p of pods) {
    ids.add(p.id);
    for (const m of ['StopPodSandbox', 'RemovePodSandbox'])
      await cri.call(m, { pod_sandbox_id: p.id }, 60_000).catch((e: Error) => {
        if (grpcCode(e) === NOT_FOUND && failedRuns.has(p.metadata.name)) return;
        bad.push(`${m} ${p.id.slice(0, 12)}: ${e.message}`);
      });
  }
  const leftPods = (await cri.call<{ items: { id: string }[] }>('ListPodSandbox', {})).items;
  const leftCtrs = (await cri.call<{ containers: { id: string }[] }>('ListContainers', {})).containers;
  for (const p of leftPods) bad.push(`pod ${p.id.slice(0, 12)} still listed`);
  for (const c of leftCtrs) bad.push(`container ${c.id.slice(0, 12)} still listed`);
  return verdict(
    'every pod stopped and removed through CRI',
    bad,
    `${pods.length} pods, ${ctrs.length} containers removed`,
  );
}

/**
 * The end of a chaos run on a node with pods: the pod checks (runc's view of namespace k8s.io
 * against the CRI's), every pod removed through the CRI, then the node checked clean of the
 * workload's containers and the pods (checkClean).
 */
export async function checkPodsThenClean(
  cri: Cri,
  pods: PodRecord,
  s: CleanTarget,
  ids: Set<string>,
): Promise<Check[]> {
  const checks = await checkPods(
    cri,
    pods,
    () => runcList(s.stateRoot, 'k8s.io'),
    (id) => taskOf(s, 'k8s.io', id),
  );
  const failedRuns = new Set(pods.pods.filter((p) => !p.podId).map((p) => p.name));
  checks.push(await removeAllPods(cri, ids, failedRuns));
  checks.push(...(await checkClean(s, ids)));
  return checks;
}
