/**
 * The CRI part of the chaos workload: a worker that drives pods through the gateway's socket as
 * the kubelet would (RunPodSandbox, CreateContainer, StartContainer of a batch container with a
 * known exit code and log, later StopPodSandbox and RemovePodSandbox), recording what each call
 * answered. Only acknowledged outcomes are held to the invariants (pod-invariants.ts).
 */
import { join } from 'node:path';
import { loadCriDefinition } from '@berth/cri-gateway';
import * as grpc from '@grpc/grpc-js';
import { pick } from './driver.js';
import { batchScript } from './workload.js';

/** A CRI RuntimeService client on a unix socket, as crictl would use. */
export interface Cri {
  /** Calls a unary RPC; rejects with the gRPC error. */
  call<T = Record<string, unknown>>(method: string, req: unknown, timeoutMs?: number): Promise<T>;
  close(): void;
}

type UnaryFn = (
  r: unknown,
  md: grpc.Metadata,
  o: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, v: unknown) => void,
) => void;

/** Opens a RuntimeService client on `socket`. */
export function criRuntime(socket: string): Cri {
  const v1 = (grpc.loadPackageDefinition(loadCriDefinition()).runtime as grpc.GrpcObject)
    .v1 as grpc.GrpcObject;
  const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
  const c = new Runtime(`unix:${socket}`, grpc.credentials.createInsecure());
  return {
    call: <T>(method: string, req: unknown, timeoutMs = 10_000) =>
      new Promise<T>((resolve, reject) => {
        const fn = (c as unknown as Record<string, UnaryFn>)[method];
        if (!fn) throw new Error(`no CRI method ${method}`);
        // waitForReady (a metadata option in grpc-js): while the gateway is down a call waits
        // for its socket, as long as its deadline, instead of failing at once and spinning.
        const md = new grpc.Metadata({ waitForReady: true });
        fn.call(c, req, md, { deadline: new Date(Date.now() + timeoutMs) }, (e, v) =>
          e ? reject(e) : resolve(v as T),
        );
      }),
    close: () => c.close(),
  };
}

/** The gRPC status code of a failed call (NOT_FOUND = 5). */
export const grpcCode = (err: unknown): number | undefined => (err as grpc.ServiceError).code;

/** One pod the worker ran: its sandbox, and the batch container in it. */
export interface PodRun {
  name: string;
  /** When RunPodSandbox was sent, ms after the chaos began. */
  atMs: number;
  /** RunPodSandbox answered an id. */
  podId: string;
  /** CreateContainer answered an id ('' otherwise). */
  ctrId: string;
  /** StartContainer succeeded: the container must exit with `code` and log `lines` lines. */
  started: boolean;
  lines: number;
  code: number;
  /**
   * StopPodSandbox was sent. From then on the pod may be stopped in part even when the call
   * failed: a stop kills the containers and the pause process before it tears the network down
   * (containerd's order too), and the kubelet retries a failed stop rather than expecting the pod
   * to be ready again. Such a pod is held to wholeness only, its container to no exit code.
   */
  stopSent: boolean;
  /** StopPodSandbox succeeded: the pod is no longer ready (and its container may have been killed). */
  stopped: boolean;
  /** StopPodSandbox and RemovePodSandbox both succeeded: the pod must be gone. */
  removed: boolean;
}

/** What the pod worker did. */
export interface PodRecord {
  pods: PodRun[];
  ops: Record<string, { ok: number; failed: number }>;
  /** The first error each method answered (for the report). */
  errors: Record<string, string>;
  /** Directory of the pods' log directories. */
  logRoot: string;
}

/** The PodSandboxConfig of a chaos pod (bridge network, its own log directory). */
export function podConfig(name: string, logRoot: string): Record<string, unknown> {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'chaos', attempt: 0 },
    hostname: name,
    log_directory: join(logRoot, name),
    labels: { chaos: 'pod', 'io.kubernetes.pod.name': name },
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
  };
}

// kubelet's own deadline for RunPodSandbox and friends is minutes; a fault may hold one a while.
const SLOW_MS = 60_000;

async function tryCall<T>(rec: PodRecord, cri: Cri, method: string, req: unknown): Promise<T | undefined> {
  const c = rec.ops[method] ?? { ok: 0, failed: 0 };
  rec.ops[method] = c;
  try {
    const r = await cri.call<T>(method, req, SLOW_MS);
    c.ok++;
    return r;
  } catch (err) {
    c.failed++;
    rec.errors[method] ??= (err as Error).message;
    return undefined;
  }
}

/** Runs a pod with one batch container in it. */
async function runOne(cri: Cri, rec: PodRecord, image: string, rand: () => number, t0: number, n: number) {
  const name = `p-${n}`;
  const lines = 5 + Math.floor(rand() * 100);
  const code = 10 + Math.floor(rand() * 90);
  const run: PodRun = {
    name,
    atMs: Date.now() - t0,
    podId: '',
    ctrId: '',
    started: false,
    lines,
    code,
    stopSent: false,
    stopped: false,
    removed: false,
  };
  rec.pods.push(run);
  const config = podConfig(name, rec.logRoot);
  const pod = await tryCall<{ pod_sandbox_id: string }>(rec, cri, 'RunPodSandbox', { config });
  if (!pod) return;
  run.podId = pod.pod_sandbox_id;
  const ctr = await tryCall<{ container_id: string }>(rec, cri, 'CreateContainer', {
    pod_sandbox_id: run.podId,
    config: {
      metadata: { name: 'batch', attempt: 0 },
      image: { image },
      command: ['sh', '-c', batchScript(lines, code)],
      log_path: 'batch/0.log',
      linux: {
        security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
      },
    },
    sandbox_config: config,
  });
  if (!ctr) return;
  run.ctrId = ctr.container_id;
  run.started = (await tryCall(rec, cri, 'StartContainer', { container_id: run.ctrId })) !== undefined;
}

/**
 * Stops and removes one pod the worker ran (the kubelet's order: stop, then remove). A step that
 * fails is retried on a later turn (see runPodWorker), as the kubelet retries it.
 */
async function removeOne(cri: Cri, rec: PodRecord, run: PodRun) {
  if (!run.stopped) {
    run.stopSent = true;
    if (!(await tryCall(rec, cri, 'StopPodSandbox', { pod_sandbox_id: run.podId }))) return;
    run.stopped = true;
  }
  run.removed = (await tryCall(rec, cri, 'RemovePodSandbox', { pod_sandbox_id: run.podId })) !== undefined;
}

/**
 * Runs pods until `endAt`: two in three steps run a new pod, one in three stops and removes a pod
 * whose container was started (leaving at least two for the invariants), or first retries the
 * stop or removal of one that failed.
 */
export async function runPodWorker(
  cri: Cri,
  o: { image: string; logRoot: string; rand: () => number; endAt: number; t0: number },
): Promise<PodRecord> {
  const rec: PodRecord = { pods: [], ops: {}, errors: {}, logRoot: o.logRoot };
  let n = 0;
  let failedSteps = 0;
  while (Date.now() < o.endAt) {
    const before = failures(rec);
    const done = rec.pods.filter((p) => p.started && !p.stopSent);
    const failed = rec.pods.find((p) => p.stopSent && !p.removed);
    if (o.rand() < 0.34 && (failed || done.length > 2))
      await removeOne(cri, rec, failed ?? pick(o.rand, done));
    else await runOne(cri, rec, o.image, o.rand, o.t0, ++n);
    failedSteps = failures(rec) > before ? failedSteps + 1 : 0;
    // A step that failed (a service down answers at once) waits before the next, longer each
    // time it fails again, as the kubelet backs off: without it the worker runs and fails
    // hundreds of pods while a service restarts.
    if (failedSteps > 0)
      await delay(Math.min(STEP_BACKOFF_MAX_MS, STEP_BACKOFF_MS * 2 ** (failedSteps - 1)), o.endAt);
  }
  return rec;
}

/** The first and the longest wait after a failed step of the pod worker. */
const STEP_BACKOFF_MS = 50;
const STEP_BACKOFF_MAX_MS = 2_000;

/** How many calls of the worker have failed so far. */
function failures(rec: PodRecord): number {
  return Object.values(rec.ops).reduce((a, c) => a + c.failed, 0);
}

/** Waits `ms`, but not past `endAt`. */
function delay(ms: number, endAt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, Math.min(ms, endAt - Date.now()))));
}
