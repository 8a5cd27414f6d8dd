/**
 * Interleaved CRI lifecycles against several CRI sockets (name=socket arguments): each round runs
 * one pod + container lifecycle on every runtime in turn (the order rotates each round), timing each
 * RPC from this grpc-js client, so a shared machine's load weighs on every runtime alike. Prints the
 * median of each RPC per runtime and each runtime's ratio to the first. The images (PAUSE is the
 * runtime's own sandbox image; IMAGE, default the e2e busybox) must be pulled already.
 * Run: pnpm --filter @berth/bench run cri-ab ctd=/path/ctd.sock berth=/path/cri.sock
 * Env: BENCH_N rounds (20).
 */
import { randomBytes } from 'node:crypto';
import { loadCriDefinition } from '@berth/cri-gateway';
import * as grpc from '@grpc/grpc-js';
import { pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 20);
const IMAGE = process.env.IMAGE ?? 'registry.k8s.io/e2e-test-images/busybox:1.29-2';
const RPCS = [
  'RunPodSandbox',
  'CreateContainer',
  'StartContainer',
  'StopContainer',
  'RemoveContainer',
  'StopPodSandbox',
  'RemovePodSandbox',
] as const;

type Unary = (
  req: unknown,
  opts: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, r: unknown) => void,
) => void;

const runtimes = process.argv.slice(2).map((a) => {
  const [name = '', socket = ''] = a.split('=');
  const pkg = grpc.loadPackageDefinition(loadCriDefinition());
  const v1 = (pkg.runtime as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
  const client = new Runtime(`unix:${socket}`, grpc.credentials.createInsecure());
  const times: Record<string, number[]> = Object.fromEntries(RPCS.map((r) => [r, []]));
  return { name, client, times };
});

async function call<T>(rt: (typeof runtimes)[number], method: string, req: unknown): Promise<T> {
  const fn = (rt.client as unknown as Record<string, Unary>)[method] as Unary;
  const t0 = performance.now();
  const reply = await new Promise<T>((resolve, reject) =>
    fn.call(rt.client, req, { deadline: new Date(Date.now() + 120_000) }, (e, r) =>
      e ? reject(new Error(`${rt.name} ${method}: ${e.message}`)) : resolve(r as T),
    ),
  );
  rt.times[method]?.push(performance.now() - t0);
  return reply;
}

async function lifecycle(rt: (typeof runtimes)[number]): Promise<void> {
  const uid = randomBytes(6).toString('hex');
  const config = { metadata: { name: `ab-${uid}`, uid, namespace: 'ab', attempt: 0 }, linux: {} };
  const { pod_sandbox_id: pod } = await call<{ pod_sandbox_id: string }>(rt, 'RunPodSandbox', { config });
  const ctr = { metadata: { name: 'c', attempt: 0 }, image: { image: IMAGE }, command: ['top'], linux: {} };
  const { container_id: id } = await call<{ container_id: string }>(rt, 'CreateContainer', {
    pod_sandbox_id: pod,
    config: ctr,
    sandbox_config: config,
  });
  await call(rt, 'StartContainer', { container_id: id });
  await call(rt, 'StopContainer', { container_id: id, timeout: 60 });
  await call(rt, 'RemoveContainer', { container_id: id });
  await call(rt, 'StopPodSandbox', { pod_sandbox_id: pod });
  await call(rt, 'RemovePodSandbox', { pod_sandbox_id: pod });
}

for (let i = 0; i < N; i++) {
  for (let k = 0; k < runtimes.length; k++) {
    const rt = runtimes[(i + k) % runtimes.length];
    if (rt) await lifecycle(rt);
  }
}
const f = (n: number) => n.toFixed(1).padStart(8);
process.stdout.write(`medians in ms over ${N} interleaved rounds (ratio to ${runtimes[0]?.name})\n`);
process.stdout.write(`${'RPC'.padEnd(18)}${runtimes.map((r) => r.name.padStart(16)).join('')}\n`);
for (const rpc of RPCS) {
  const base = pct(runtimes[0]?.times[rpc] ?? [], 50);
  const cells = runtimes.map((r) => {
    const m = pct(r.times[rpc] ?? [], 50);
    return r === runtimes[0] ? f(m).padStart(16) : `${f(m)} ${(m / base).toFixed(2)}x`.padStart(16);
  });
  process.stdout.write(`${rpc.padEnd(18)}${cells.join('')}\n`);
}
for (const r of runtimes) r.client.close();
