/**
 * critest's benchmark mode as the CRI benchmark drives it: the params file, one run against a CRI
 * socket, and the per-operation medians read back from the JSON files it writes
 * (LifecycleBenchmarksResultsSet: operationsNames and, per sample, operationsDurationsNs).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadCriDefinition } from '@berth/cri-gateway';
import * as grpc from '@grpc/grpc-js';

/** critest's operation names -> the CRI RPC each one times, in the order the table prints. */
export const OPERATIONS: [critest: string, rpc: string][] = [
  ['CreatePod', 'RunPodSandbox'],
  ['StatusPod', 'PodSandboxStatus'],
  ['StopPod', 'StopPodSandbox'],
  ['RemovePod', 'RemovePodSandbox'],
  ['CreateContainer', 'CreateContainer'],
  ['StartContainer', 'StartContainer'],
  ['StatusContainer', 'ContainerStatus'],
  ['StopContainer', 'StopContainer'],
  ['RemoveContainer', 'RemoveContainer'],
  ['PullImage', 'PullImage'],
  ['StatusImage', 'ImageStatus'],
  ['RemoveImage', 'RemoveImage'],
  ['ListImages', 'ListImages'],
];

/** The files critest -benchmark writes into its output dir. */
const RESULT_FILES = [
  'pod_benchmark_data.json',
  'container_benchmark_data.json',
  'image_lifecycle_benchmark_data.json',
  'image_listing_benchmark_data.json',
];

/** The images critest's benchmarks use: pre-pulled so no sample pays a first pull. */
export const BENCH_IMAGES = ['registry.k8s.io/e2e-test-images/busybox:1.29-2'];

/**
 * The params file for this run: PARAMS as is, or (without it) 100 pods, 100 containers and 50
 * images, one at a time. BENCH_N, when set, replaces the three counts (a quick run).
 */
export async function paramsFile(
  dir: string,
  params: string | undefined,
  n: string | undefined,
): Promise<string> {
  let text = params
    ? readFileSync(params, 'utf8')
    : [
        'containersNumber: 100',
        'containersNumberParallel: 1',
        'containerBenchmarkTimeoutSeconds: 120',
        'podsNumber: 100',
        'podsNumberParallel: 1',
        'podBenchmarkTimeoutSeconds: 120',
        'imagesNumber: 50',
        'imagesNumberParallel: 1',
        'imageBenchmarkTimeoutSeconds: 60',
        'podContainerStartBenchmarkTimeoutSeconds: 5',
        '',
      ].join('\n');
  if (n !== undefined) {
    if (!/^[1-9]\d*$/.test(n)) throw new Error(`BENCH_N must be a positive integer, got "${n}"`);
    text = text.replace(/^(containersNumber|podsNumber|imagesNumber):.*$/gm, `$1: ${n}`);
  }
  // More than one in flight loses samples and leaks sandboxes in critest v1.26 (a harness bug).
  if (/^\w+NumberParallel:\s*(?!1\s*$)\d+/m.test(text)) throw new Error('keep every *NumberParallel at 1');
  const file = join(dir, 'params.yaml');
  await writeFile(file, text);
  return file;
}

type Callback = (err: Error | null, reply?: unknown) => void;
type Rpc = (req: unknown, opts: grpc.CallOptions, cb: Callback) => void;

/** A grpc-js client of one CRI service on a unix socket, ready (waits up to 60 s for the socket). */
async function criClient(socket: string, service: 'ImageService' | 'RuntimeService') {
  const pkg = grpc.loadPackageDefinition(loadCriDefinition()) as unknown as {
    runtime: { v1: Record<string, grpc.ServiceClientConstructor> };
  };
  const Ctor = pkg.runtime.v1[service] as grpc.ServiceClientConstructor;
  const client = new Ctor(`unix:${socket}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + 60_000, (err) => (err ? reject(err) : resolve())),
  );
  const call = <T>(rpc: string, req: unknown) =>
    new Promise<T>((resolve, reject) =>
      (client[rpc] as Rpc).call(client, req, { deadline: Date.now() + 120_000 }, (err, reply) =>
        err ? reject(err) : resolve(reply as T),
      ),
    );
  return { call, close: () => client.close() };
}

/** Pulls `images` over the CRI socket. */
export async function prePull(socket: string, images: string[]): Promise<void> {
  const c = await criClient(socket, 'ImageService');
  try {
    for (const image of images) await c.call('PullImage', { image: { image } });
  } finally {
    c.close();
  }
}

/**
 * Stops and removes every pod sandbox the runtime still has (what a failed critest sample leaves
 * behind: containers, network, pause process); returns how many there were.
 */
export async function sweepPods(socket: string): Promise<number> {
  const c = await criClient(socket, 'RuntimeService');
  try {
    const { items } = await c.call<{ items: { id: string }[] }>('ListPodSandbox', {});
    for (const { id } of items) {
      await c.call('StopPodSandbox', { pod_sandbox_id: id });
      await c.call('RemovePodSandbox', { pod_sandbox_id: id });
    }
    return items.length;
  } finally {
    c.close();
  }
}

/** The outcome of one critest run. */
export interface CritestRun {
  /** Median per critest operation name, in ms. */
  medians: Map<string, number>;
  /** Samples per operation. */
  samples: Map<string, number>;
  /** Every sample per operation, in ms (to pool the samples of several runs). */
  values: Map<string, number[]>;
  exitCode: number;
  log: string;
}

/**
 * Runs `critest -benchmark` against `socket`, writing into `outDir`; resolves when it exits.
 * `skip` (a ginkgo regexp on the specs' names, e.g. "Container|Pod") leaves those out: critest's
 * benchmark mode sets ginkgo's focus itself.
 */
export async function runCritest(
  critest: string,
  socket: string,
  params: string,
  outDir: string,
  skip?: string,
): Promise<CritestRun> {
  await mkdir(outDir, { recursive: true });
  const log = join(outDir, 'critest.log');
  const fd = openSync(log, 'w');
  const endpoint = `unix://${socket}`;
  const child = spawn(
    critest,
    [
      '--runtime-endpoint',
      endpoint,
      '--image-endpoint',
      endpoint,
      '-benchmark',
      '-benchmarking-params-file',
      params,
      '-benchmarking-output-dir',
      outDir,
      ...(skip ? [`--ginkgo.skip=${skip}`] : []),
    ],
    { cwd: outDir, stdio: ['ignore', fd, fd] },
  );
  closeSync(fd);
  const exitCode = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
  return { ...readResults(outDir), exitCode, log };
}

/** The median of each operation over the result files present in `dir`. */
export function readResults(dir: string): Pick<CritestRun, 'medians' | 'samples' | 'values'> {
  const medians = new Map<string, number>();
  const samples = new Map<string, number>();
  const values = new Map<string, number[]>();
  for (const f of RESULT_FILES) {
    if (!existsSync(join(dir, f))) continue;
    const set = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
      operationsNames: string[];
      datapoints: { operationsDurationsNs: number[] }[] | null;
    };
    set.operationsNames.forEach((op, i) => {
      const xs = (set.datapoints ?? []).map((d) => (d.operationsDurationsNs[i] ?? Number.NaN) / 1e6);
      if (xs.length === 0) return;
      medians.set(op, median(xs));
      samples.set(op, xs.length);
      values.set(op, xs);
    });
  }
  return { medians, samples, values };
}

/** The median of some numbers (of an odd count the middle one, else the mean of the two). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
