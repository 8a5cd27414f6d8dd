import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskApi } from '@berth/api';
import { call, collectAll } from '@berth/kit';
import type { ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll } from 'vitest';
import { CRI_NAMESPACE } from '../images/ports.js';
import { type RuntimeStack, startRuntimeStack } from './runtime-stack.js';

// Fixtures of the CRI pod tests. Each test file runs in its own worker, so the stack these
// helpers use is the one that file started with startPodStack.

/** The sandbox image name the tests configure: the gateway builds it from catatonit. */
export const SANDBOX_IMAGE = 'registry.test/pause:t1';
/** The busybox test image (scripts/busybox-image.sh), imported into k8s.io. */
export const BUSYBOX = 'localhost/busybox:cri';

let s: RuntimeStack;
let logDir: string;

/** Starts the stack, a directory for pod logs, and imports the busybox image. */
export async function startPodStack(
  shimSettings?: Parameters<typeof startRuntimeStack>[0]['shimSettings'],
): Promise<{ s: RuntimeStack; logDir: string }> {
  s = await startRuntimeStack({ sandboxImage: SANDBOX_IMAGE, ...(shimSettings ? { shimSettings } : {}) });
  logDir = join(s.root, 'pod-logs');
  await mkdir(logDir, { recursive: true });
  await s.importBusybox(BUSYBOX);
  return { s, logDir };
}

/**
 * The pod stack of one test file: started (startPodStack) before its tests and stopped after
 * them. Returns the running stack's getter.
 */
export function usePodStack(): () => RuntimeStack {
  let own: RuntimeStack | undefined;
  beforeAll(async () => {
    ({ s: own } = await startPodStack());
  }, 180_000);
  afterAll(async () => {
    await own?.stop();
  }, 60_000);
  return () => {
    if (!own) throw new Error('the pod stack did not start');
    return own;
  };
}

/** A proto message as a plain object. */
export type Json = Record<string, unknown>;
/** Calls a RuntimeService RPC on the stack's socket. */
export const rpc = <T = Json>(method: string, req: unknown) =>
  s.client.unary<T>(s.client.runtime, method, req);
/** The gRPC error a call fails with (fails the test when it succeeds). */
export const grpcError = (p: Promise<unknown>): Promise<ServiceError> =>
  p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as ServiceError,
  );
export const NOT_FOUND = 5;
export const ALREADY_EXISTS = 6;
export const INVALID_ARGUMENT = 3;
export const DEADLINE_EXCEEDED = 4;
export const FAILED_PRECONDITION = 9;

/** A PodSandboxConfig as the kubelet sends it, with labels, annotations, DNS and a log directory. */
export function podConfig(name: string, extra: Json = {}): Json {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
    hostname: name,
    log_directory: join(logDir, name),
    dns_config: { servers: ['10.0.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
    labels: { app: name, 'io.kubernetes.pod.name': name },
    annotations: { 'example.com/note': 'kept as is: {"json": true}' },
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    ...extra,
  };
}

/** A ContainerConfig of the busybox image running `echo hi; sleep`, logging to <name>/0.log. */
export function ctrConfig(name: string, extra: Json = {}): Json {
  return {
    metadata: { name, attempt: 0 },
    image: { image: BUSYBOX },
    command: ['sh', '-c', 'echo hi; exec sleep 1000'],
    log_path: `${name}/0.log`,
    labels: { ctr: name },
    annotations: { 'ctr.example.com/a': 'b' },
    // As the kubelet does: the container repeats the pod's namespace options.
    linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    ...extra,
  };
}

/** RunPodSandbox of podConfig(name); answers the pod id. */
export async function runPod(name: string, extra: Json = {}): Promise<string> {
  const r = await rpc<{ pod_sandbox_id: string }>('RunPodSandbox', { config: podConfig(name, extra) });
  return r.pod_sandbox_id;
}

/** CreateContainer of ctrConfig(name) in a pod; answers the container id. */
export async function createCtr(
  pod: string,
  podName: string,
  name: string,
  extra: Json = {},
): Promise<string> {
  const r = await rpc<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod,
    config: ctrConfig(name, extra),
    sandbox_config: podConfig(podName),
  });
  return r.container_id;
}

/** ContainerStatus's status. */
export const ctrStatus = async (id: string) =>
  (await rpc<{ status: Json }>('ContainerStatus', { container_id: id })).status;
/** ExecSync with a timeout in seconds. */
export const exec = (id: string, cmd: string[], timeout = 10) =>
  rpc<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('ExecSync', { container_id: id, cmd, timeout });

/** Polls until `check` returns a truthy value (bounded). */
export async function until<T>(
  what: string,
  check: () => T | Promise<T>,
  ms = 20_000,
): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every container the task-service holds in the CRI namespace. */
export async function berthContainers(): Promise<string[]> {
  const page = (input: { cursor?: string }) =>
    call(s.nc, TaskApi, 'list-containers', input, { namespace: CRI_NAMESPACE, timeoutMs: 10_000 });
  return (await collectAll(page, {}, 'containers')).map((c) => c.container.id);
}
