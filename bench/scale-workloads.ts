/**
 * The workloads bench/scale.ts drives against a running stack. Each has a setup (not measured)
 * and an operation `op(i)` that does one unit of work and resolves when it is done:
 *  - pull: pull (and unpack) the i-th of N distinct generated images from a registry on loopback;
 *    image-service fetches and verifies, snapshot-service unpacks.
 *  - run: one container of busybox `true` created, started, its exit awaited, deleted, through
 *    the task-service API (as bench/lifecycle.ts); task-service, snapshot-service and shim work.
 *  - pod: CRI RunPodSandbox (pause container, pod network through CNI), StopPodSandbox and
 *    RemovePodSandbox on the gateway's socket with @grpc/grpc-js, as the kubelet calls them.
 */
import { randomBytes } from 'node:crypto';
import { type ExitStatus, ImageApi, TaskApi, type TaskExit } from '@berth/api';
import { loadCriDefinition } from '@berth/cri-gateway';
import { call, client as clientOf, subscribeEvents } from '@berth/kit';
import { tarBuffer } from '@berth/tar';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import { makeImage, makeLayer, uploadImage } from '../packages/image-service/dist/testing/index.js';
import { pushBusybox } from '../tests/e2e/containers-stack.js';

/** What a workload needs of the stack. */
export interface WorkloadEnv {
  nc: NatsConnection;
  node: string;
  /** Registry on loopback, e.g. 127.0.0.1:5000 (host:port). */
  registryHost: string;
  registryUrl: string;
  /** Scratch directory for setup files. */
  scratch: string;
  /** The CRI gateway's unix socket. */
  criSocket: string;
}

/** A prepared workload: `op(i)` for i in [0, n). */
export interface Workload {
  op(i: number): Promise<void>;
  close(): Promise<void>;
}

export const WORKLOADS = ['pull', 'run', 'pod'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';

/**
 * N distinct images of `layers` gzip layers, each holding 8 files of random data totalling
 * `layerKiB`, pushed to the registry under a tag unique to this run (a fresh store pulls all).
 */
async function pullWorkload(
  env: WorkloadEnv,
  n: number,
  layers: number,
  layerKiB: number,
): Promise<Workload> {
  const tag = `t${randomBytes(4).toString('hex')}`;
  for (let i = 0; i < n; i++) {
    const ls = Array.from({ length: layers }, (_, l) =>
      makeLayer(
        tarBuffer(
          Array.from({ length: 8 }, (_, f) => ({
            name: `data/${i}-${l}-${f}.bin`,
            type: 'file' as const,
            mode: 0o644,
            data: randomBytes(Math.floor((layerKiB * 1024) / 8)),
          })),
        ),
        'gzip',
      ),
    );
    await uploadImage(env.registryUrl, `scale/img${i}`, tag, makeImage(ls, { arch }));
  }
  return {
    async op(i) {
      const r = await call(
        env.nc,
        ImageApi,
        'pull',
        { ref: `${env.registryHost}/scale/img${i}:${tag}` },
        { node: env.node, namespace: 'default', timeoutMs: 600_000 },
      );
      if (r.unpack !== 'done') throw new Error(`pull of img${i}: unpack ${r.unpack} ${r.unpackError ?? ''}`);
    },
    close: async () => undefined,
  };
}

/** busybox pushed to the registry and pulled once; then one container lifecycle per op. */
async function runWorkload(env: WorkloadEnv): Promise<Workload> {
  const ref = `${env.registryHost}/scale/busybox:latest`;
  await pushBusybox(env.scratch, ref);
  await call(env.nc, ImageApi, 'pull', { ref }, { node: env.node, namespace: 'default', timeoutMs: 120_000 });
  const tasks = clientOf(env.nc, TaskApi, { namespace: 'default' });
  const waiters = new Map<string, (e: ExitStatus) => void>();
  const sub = subscribeEvents(env.nc, 'tasks.exit', (ev) => {
    const e = ev.event as TaskExit;
    if (!e.execId) waiters.get(e.id)?.({ exitCode: e.exitCode, exitedAt: e.exitedAt });
  });
  await env.nc.flush();
  const op = async () => {
    const c = await tasks['create-container']({ image: ref, cmd: ['true'], node: env.node });
    const exited = new Promise<ExitStatus>((r) => waiters.set(c.id, r));
    await tasks.create({ id: c.id });
    await tasks.start({ id: c.id });
    const e = await exited;
    waiters.delete(c.id);
    if (e.exitCode !== 0) throw new Error(`container ${c.id}: true exited ${e.exitCode}`);
    await tasks['delete-container']({ id: c.id, force: true });
  };
  await op(); // warm-up: the first container pays for the image's snapshot and JIT
  return {
    op,
    close: async () => sub.unsubscribe(),
  };
}

type UnaryFn = (
  r: unknown,
  o: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, v: unknown) => void,
) => void;

/** One pod per op: run, stop, remove; the sandbox image is pulled (built) by a warm-up pod. */
async function podWorkload(env: WorkloadEnv): Promise<Workload> {
  const v1 = (grpc.loadPackageDefinition(loadCriDefinition()).runtime as grpc.GrpcObject)
    .v1 as grpc.GrpcObject;
  const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
  const c = new Runtime(`unix:${env.criSocket}`, grpc.credentials.createInsecure());
  const rpc = <T>(method: string, req: unknown) =>
    new Promise<T>((res, rej) => {
      const fn = (c as unknown as Record<string, UnaryFn>)[method] as UnaryFn;
      fn.call(c, req, { deadline: new Date(Date.now() + 120_000) }, (e, v) => (e ? rej(e) : res(v as T)));
    });
  const run = randomBytes(3).toString('hex');
  const op = async (i: number) => {
    const name = `scale-${run}-${i}`;
    const r = await rpc<{ pod_sandbox_id: string }>('RunPodSandbox', {
      config: {
        metadata: { name, uid: `uid-${name}`, namespace: 'default', attempt: 0 },
        hostname: name,
        linux: { security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
      },
    });
    await rpc('StopPodSandbox', { pod_sandbox_id: r.pod_sandbox_id });
    await rpc('RemovePodSandbox', { pod_sandbox_id: r.pod_sandbox_id });
  };
  await op(-1); // warm-up: the first pod builds the sandbox image
  return { op, close: async () => c.close() };
}

/** Prepares the named workload for `n` operations. */
export function prepare(
  name: WorkloadName,
  env: WorkloadEnv,
  n: number,
  opts: { layers: number; layerKiB: number },
): Promise<Workload> {
  if (name === 'pull') return pullWorkload(env, n, opts.layers, opts.layerKiB);
  return name === 'run' ? runWorkload(env) : podWorkload(env);
}
