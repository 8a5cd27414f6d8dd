/**
 * CRI socket benchmark: what a do-nothing CRI call costs the gateway's gRPC server. Prints
 * figures; asserts nothing.
 *  before: the CRI gRPC server bound by grpc-js itself on a unix socket (no front; Go clients fail)
 *  front:  the gateway on grpc-js (grpcServer "grpc-js": every connection through the authority front)
 *  after:  the gateway as berth runs it (startGateway, grpcServer "berth": berth's own HTTP/2 server)
 * Each server runs in its own process, as the gateway does; this process is the client (grpc-js,
 * :authority localhost, so "before" can answer it). For each: N sequential unary Version calls
 * (p50/p95/p99 latency), then M calls with C in flight (calls/s), and the server process's CPU
 * time per call over both (the figure that least depends on what else the machine runs). Real nats-server from
 * @berth/testing (the gateway needs one; Version does not use it).
 * Run: pnpm --filter @berth/bench run cri-rpc   Env: BENCH_N (3000), BENCH_M (20000), BENCH_C (16),
 * BENCH_VARIANTS (before,front,after,... in order), BENCH_SERVER_ARGS (node flags for the servers, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_TELEMETRY=1 (the "after" server records a span per call
 * into a trace store, as the gateway does), BENCH_DEADLINE_S (each call carries a deadline of that many
 * seconds, a grpc-timeout header, as Go clients such as critest and the kubelet send one).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCriServer, implemented, loadCriDefinition, startGateway } from '@berth/cri-gateway';
import { connectNats, createLogger, startTelemetry } from '@berth/kit';
import { startNats } from '@berth/testing';
import * as grpc from '@grpc/grpc-js';
import { pct } from './measure.js';

const N = Number(process.env.BENCH_N ?? 3000);
const M = Number(process.env.BENCH_M ?? 20_000);
const C = Number(process.env.BENCH_C ?? 16);
const WARMUP = 500;
const DEADLINE_S = Number(process.env.BENCH_DEADLINE_S ?? 0);
// Extra node flags for the server processes, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
const SERVER_ARGS = (process.env.BENCH_SERVER_ARGS ?? '').split(' ').filter(Boolean);
const VARIANTS = (process.env.BENCH_VARIANTS ?? 'front,after,front,after,front,after').split(
  ',',
) as Variant[];

type Variant = 'before' | 'front' | 'after';

const ms = (n: number) => `${n.toFixed(3)} ms`;

/** The server half: runs in a child process until killed. */
async function serve(variant: Variant, socket: string, natsUrl: string): Promise<void> {
  const log = createLogger({ service: 'cri-gateway', node: 'bench', level: 'silent' });
  if (variant === 'before') {
    // Only Version is called, and it uses none of the handler dependencies.
    const server = createCriServer({ deps: { log } as never, handlers: implemented });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  } else {
    const nc = await connectNats({ url: natsUrl, name: 'bench-cri' });
    const runRoot = join(socket, '..');
    // As the gateway runs: a span per call, kept in a trace store.
    if (process.env.BENCH_TELEMETRY === '1') {
      startTelemetry({
        service: 'cri-gateway',
        version: '0.0.0',
        node: 'bench',
        storeDir: join(runRoot, 'traces'),
      });
    }
    await startGateway({
      nc,
      node: 'bench',
      socket,
      runRoot,
      snapshotsDir: join(runRoot, 'snap'),
      containersDir: join(runRoot, 'containers'),
      log,
      grpcServer: variant === 'front' ? 'grpc-js' : 'berth',
    });
  }
  // The parent asks for this process's CPU time around each phase: robust on a busy machine.
  // A line on stdin asks for the CPU time; a line on stdout answers (tsx keeps IPC for itself).
  process.stdin.on('data', () => {
    const u = process.cpuUsage();
    process.stdout.write(`cpu ${u.user + u.system}\n`);
  });
  process.once('SIGTERM', () => process.exit(0));
  process.stdout.write('ready\n');
}

function startServer(variant: Variant, socket: string, natsUrl: string): Promise<ChildProcess> {
  const p = spawn(
    process.execPath,
    [...process.execArgv, ...SERVER_ARGS, import.meta.filename, 'serve', variant, socket, natsUrl],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    p.stdout?.setEncoding('utf8');
    p.stdout?.once('data', (line: string) =>
      line.startsWith('ready') ? resolve(p) : reject(new Error(line)),
    );
    p.once('exit', (code) => reject(new Error(`${variant} server exited ${code}`)));
  });
}

/** The server's CPU time so far (user + system), in microseconds. */
function serverCpu(p: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    p.stdout?.once('data', (line: string) => resolve(Number(line.slice(4))));
    p.stdin?.write('cpu\n');
  });
}

type VersionFn = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void;

function client(socket: string): { version: () => Promise<void>; close: () => void } {
  const pkg = grpc.loadPackageDefinition(loadCriDefinition());
  const v1 = (pkg.runtime as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
  const c = new Runtime(`unix:${socket}`, grpc.credentials.createInsecure());
  const fn = (c as unknown as { Version: VersionFn }).Version.bind(c);
  return {
    version: () =>
      new Promise((resolve, reject) =>
        fn({ version: '0.1.0' }, DEADLINE_S > 0 ? { deadline: Date.now() + DEADLINE_S * 1000 } : {}, (err) =>
          err ? reject(err) : resolve(),
        ),
      ),
    close: () => c.close(),
  };
}

async function measure(variant: Variant, dir: string, natsUrl: string): Promise<string> {
  // A fresh directory per run: a killed server leaves its socket file behind.
  const runDir = await mkdtemp(join(dir, `${variant}-`));
  const socket = join(runDir, 'cri.sock');
  const server = await startServer(variant, socket, natsUrl);
  const c = client(socket);
  try {
    for (let i = 0; i < WARMUP; i++) await c.version();
    const cpu0 = await serverCpu(server);
    const lat: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      await c.version();
      lat.push(performance.now() - t);
    }
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: C }, async () => {
        while (next++ < M) await c.version();
      }),
    );
    const rate = M / ((performance.now() - started) / 1000);
    const cpuPerCall = ((await serverCpu(server)) - cpu0) / (N + M);
    return [
      variant.padEnd(6),
      `p50 ${ms(pct(lat, 50))}`,
      `p95 ${ms(pct(lat, 95))}`,
      `p99 ${ms(pct(lat, 99))}`,
      `${Math.round(rate)} calls/s (${C} in flight)`,
      `server CPU ${cpuPerCall.toFixed(1)} µs/call`,
    ].join('  ');
  } finally {
    c.close();
    // SIGTERM ends the server through process.exit, so a --cpu-prof profile gets written.
    await new Promise((resolve) => {
      server.once('exit', resolve);
      server.kill('SIGTERM');
    });
  }
}

async function main(): Promise<void> {
  const nats = await startNats({ jetstream: false });
  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-cri-'));
  try {
    console.log(`CRI unary Version over a unix socket: N=${N} sequential, M=${M} with C=${C} in flight`);
    for (const variant of VARIANTS) {
      console.log(await measure(variant, dir, nats.url));
    }
  } finally {
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'serve') {
  await serve(process.argv[3] as Variant, process.argv[4] ?? '', process.argv[5] ?? '');
} else {
  await main();
}
