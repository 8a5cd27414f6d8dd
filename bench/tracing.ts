/**
 * Cost of tracing (issue 10): the container lifecycle with tracing off, with the default embedded
 * span store, and with the store plus OTLP export to a local receiver, printed side by side.
 *  (a) sequential create + start + wait + delete of `true` over the task-service API, each
 *      lifecycle under a root span of its own when tracing is on (as a CLI command has)
 *  (a') `berth run --rm IMAGE true` through the CLI
 * Prints figures; asserts nothing. Env: BENCH_N (default 20), BENCH_CLI_N (default 10).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ExitStatus, TaskApi, type TaskExit } from '@berth/api';
import { client as clientOf, startCliTelemetry, subscribeEvents } from '@berth/kit';
import { SERVICES, startContainerStack } from '../tests/e2e/containers-stack.js';

const N = Number(process.env.BENCH_N ?? 20);
const CLI_N = Number(process.env.BENCH_CLI_N ?? 10);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

/** A local OTLP/HTTP receiver that accepts everything and counts the spans. */
async function receiver(): Promise<{ endpoint: string; spans: () => number; close: () => Promise<void> }> {
  let spans = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      spans += (text.match(/"spanId"/g) ?? []).length;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans: () => spans,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

type Mode = 'off' | 'store' | 'store+otlp';
interface Setup {
  lifecycle(): Promise<void>;
  cliRun(): Promise<void>;
  exported(): number;
  stop(): Promise<void>;
}

/** A private stack whose services (and this process's calls) trace as `mode` says. */
async function setup(mode: Mode): Promise<Setup> {
  const otlp = mode === 'store+otlp' ? await receiver() : undefined;
  const s = await startContainerStack();
  // The services were started with the harness's environment: restart them with this mode's.
  if (mode === 'off') s.env.BERTH_TRACE_STORE = 'off';
  if (otlp) {
    s.env.OTEL_EXPORTER_OTLP_ENDPOINT = otlp.endpoint;
    s.env.OTEL_BSP_SCHEDULE_DELAY = '1000';
  }
  for (const name of SERVICES) {
    await s.kill(name, 'SIGTERM');
    await s.start(name);
  }
  const image = (await s.importBusybox('berth.bench/busybox:latest')).name;
  const client = clientOf(s.nc, TaskApi, { namespace: 'default' });
  const waiters = new Map<string, (e: ExitStatus) => void>();
  const sub = subscribeEvents(s.nc, 'tasks.exit', (env) => {
    const e = env.event as TaskExit;
    if (!e.execId) waiters.get(e.id)?.({ exitCode: e.exitCode, exitedAt: e.exitedAt });
  });
  await s.nc.flush();
  const once = async (): Promise<void> => {
    const c = await client['create-container']({ image, cmd: ['true'], node: s.node });
    const exited = new Promise<ExitStatus>((r) => waiters.set(c.id, r));
    await client.create({ id: c.id });
    await client.start({ id: c.id });
    const e = await exited;
    waiters.delete(c.id);
    if (e.exitCode !== 0) throw new Error(`true exited ${e.exitCode}`);
    await client['delete-container']({ id: c.id, force: true });
  };
  await once(); // warm-up
  return {
    // Under a root span when tracing is on, handed over (store, export) at the end as a CLI
    // command's are: that hand-over is part of the cost measured.
    async lifecycle() {
      // Off: no root span and nothing handed over (the client spans this process's tracer still
      // records in between land in the next traced mode's store: the off stack sees none).
      if (mode === 'off') return once();
      const telemetry = startCliTelemetry({
        service: 'bench',
        version: '0',
        node: s.node,
        storeDir: `${s.stateRoot}/traces`,
        env: otlp ? { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint } : {},
      });
      await telemetry.run('bench lifecycle', async () => {
        await once();
        return 0;
      });
      await telemetry.finish();
    },
    async cliRun() {
      const r = await s.berth(['run', '--rm', image, 'true']);
      if (r.code !== 0) throw new Error(`berth run failed: ${r.stderr}`);
    },
    exported: () => otlp?.spans() ?? 0,
    async stop() {
      sub.unsubscribe();
      await s.stop();
      await otlp?.close();
    },
  };
}

// The three stacks run side by side and take turns, so the load of this shared machine, which
// drifts by the minute, weighs on every mode alike.
const modes: Mode[] = ['off', 'store', 'store+otlp'];
const stacks = new Map<Mode, Setup>();
const results = new Map<Mode, { seq: number[]; cli: number[]; exported: number }>();
try {
  for (const m of modes) {
    stacks.set(m, await setup(m));
    results.set(m, { seq: [], cli: [], exported: 0 });
  }
  const timed = async (fn: () => Promise<void>) => {
    const a = performance.now();
    await fn();
    return performance.now() - a;
  };
  for (let i = 0; i < N; i++) {
    for (const m of modes) results.get(m)?.seq.push(await timed(() => (stacks.get(m) as Setup).lifecycle()));
  }
  for (let i = 0; i < CLI_N; i++) {
    for (const m of modes) results.get(m)?.cli.push(await timed(() => (stacks.get(m) as Setup).cliRun()));
  }
} finally {
  for (const [m, st] of stacks) {
    // Whatever the services still batch reaches the receiver on their shutdown.
    await st.stop();
    const r = results.get(m);
    if (r) r.exported = st.exported();
  }
}

const f = (n: number) => n.toFixed(1).padStart(8);
const off = results.get('off') as { seq: number[]; cli: number[] };
process.stdout.write(
  `# tracing cost (${new Date().toISOString()}), N=${N} lifecycles, ${CLI_N} CLI runs, load ${(await import('node:os')).loadavg()[0]?.toFixed(2)}\n`,
);
process.stdout.write(
  `${'mode'.padEnd(12)}${'(a) p50'.padStart(8)}${'p95'.padStart(8)}  ${'vs off'.padStart(7)}  ${"(a') p50".padStart(8)}${'p95'.padStart(8)}  ${'vs off'.padStart(7)}  spans exported\n`,
);
for (const m of modes) {
  const r = results.get(m) as { seq: number[]; cli: number[]; exported: number };
  const ratio = (a: number[], b: number[]) =>
    `${(((pct(a, 50) - pct(b, 50)) / pct(b, 50)) * 100).toFixed(1)}%`.padStart(7);
  process.stdout.write(
    `${m.padEnd(12)}${f(pct(r.seq, 50))}${f(pct(r.seq, 95))}  ${ratio(r.seq, off.seq)}  ${f(pct(r.cli, 50))}${f(pct(r.cli, 95))}  ${ratio(r.cli, off.cli)}  ${r.exported}\n`,
  );
}
