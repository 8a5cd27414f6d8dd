/**
 * Container lifecycle benchmark (issue 5). Prints figures; asserts nothing.
 *  (a) sequential: N times create + start + wait + delete of `true` (task-service API over NATS)
 *  (b) concurrent: N of the same at once, total wall time
 *  (c) floor: raw `runc run` of `true` on a prepared bundle, N times
 *  (d) density: D idle `sleep` containers; memory (PSS) of berth's processes per container
 *  (e) with containerd installed: `ctr run --rm` of `true`, N times, and the ratios
 * Env: BENCH_N (default 50), BENCH_DENSITY (default 100).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ExitStatus, TaskApi, type TaskExit } from '@berth/api';
import { client as clientOf, subscribeEvents } from '@berth/kit';
import { SERVICES, startContainerStack } from '../tests/e2e/containers-stack.js';
import { startContainerd } from './containerd.js';
import { pct, pidsOf, pssKiB, rssKiB, summary } from './measure.js';

const N = Number(process.env.BENCH_N ?? 50);
const DENSITY = Number(process.env.BENCH_DENSITY ?? 100);
let IMAGE = 'berth.bench/busybox:latest';

const f = (n: number) => n.toFixed(1);

const s = await startContainerStack();
const lines: string[] = [];
const say = (l: string) => {
  lines.push(l);
  process.stdout.write(`${l}\n`);
};
try {
  IMAGE = (await s.importBusybox(IMAGE)).name;
  const client = clientOf(s.nc, TaskApi, { namespace: 'default' });
  const waiters = new Map<string, (e: ExitStatus) => void>();
  const sub = subscribeEvents(s.nc, 'tasks.exit', (env) => {
    const e = env.event as TaskExit;
    if (!e.execId) waiters.get(e.id)?.({ exitCode: e.exitCode, exitedAt: e.exitedAt });
  });
  await s.nc.flush();

  const phases: Record<string, number[]> = {
    'create-container': [],
    create: [],
    start: [],
    'exit event': [],
    'delete-container': [],
  };
  async function lifecycle(record = false): Promise<number> {
    const marks = [performance.now()];
    const c = await client['create-container']({ image: IMAGE, cmd: ['true'], node: s.node });
    marks.push(performance.now());
    const exited = new Promise<ExitStatus>((r) => waiters.set(c.id, r));
    await client.create({ id: c.id });
    marks.push(performance.now());
    await client.start({ id: c.id });
    marks.push(performance.now());
    const e = await exited;
    marks.push(performance.now());
    waiters.delete(c.id);
    if (e.exitCode !== 0) throw new Error(`true exited ${e.exitCode}`);
    await client['delete-container']({ id: c.id, force: true });
    marks.push(performance.now());
    if (record) {
      Object.values(phases).forEach((xs, i) => {
        xs.push((marks[i + 1] ?? 0) - (marks[i] ?? 0));
      });
    }
    return (marks[marks.length - 1] ?? 0) - (marks[0] ?? 0);
  }

  say(
    `# berth lifecycle benchmark (${new Date().toISOString()}, runc ${execFileSync('runc', ['--version']).toString().split('\n')[0]?.split(' ')[2]}, ${process.arch}, ${execFileSync('nproc').toString().trim()} cores)`,
  );
  await lifecycle(); // warm-up: first-use costs (snapshot parent, JIT) are not what (a) measures
  const seq: number[] = [];
  for (let i = 0; i < N; i++) seq.push(await lifecycle(true));
  say(summary('(a) sequential create+start+wait+delete of `true`', seq));
  for (const [name, xs] of Object.entries(phases))
    say(`    - ${name}: p50=${f(pct(xs, 50))} ms p95=${f(pct(xs, 95))} ms`);

  const t0 = performance.now();
  const conc = await Promise.all(Array.from({ length: N }, () => lifecycle()));
  const total = performance.now() - t0;
  say(
    `(b) ${N} concurrent lifecycles: total ${f(total)} ms (${f((N * 1000) / total)} containers/s); per container p50=${f(pct(conc, 50))} ms p95=${f(pct(conc, 95))} ms`,
  );

  // (c) The floor: runc alone, on a bundle whose rootfs is the same busybox tree.
  const bundle = join(s.root, 'bench-bundle');
  const rootfs = join(bundle, 'rootfs');
  await mkdir(rootfs, { recursive: true });
  const layout = join(s.root, 'bench-layout');
  await mkdir(layout, { recursive: true });
  execFileSync('tar', ['-xf', join(s.root, 'busybox-oci.tar'), '-C', layout]);
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const manifest = JSON.parse(
    readFileSync(join(layout, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'),
  );
  execFileSync('tar', [
    '-xf',
    join(layout, 'blobs', 'sha256', manifest.layers[0].digest.slice(7)),
    '-C',
    rootfs,
  ]);
  execFileSync('runc', ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['true'];
  await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
  const runcRoot = join(s.root, 'bench-runc');
  const raw: number[] = [];
  for (let i = 0; i < N + 1; i++) {
    const id = `bench-${randomBytes(4).toString('hex')}`;
    const a = performance.now();
    const r = spawnSync('runc', ['--root', runcRoot, 'run', '--bundle', bundle, id], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`runc run exited ${r.status}`);
    if (i > 0) raw.push(performance.now() - a);
  }
  say(summary('(c) floor: raw `runc run` of `true` on a prepared bundle', raw));
  say(`    berth/runc p50 ratio: ${(pct(seq, 50) / pct(raw, 50)).toFixed(2)}x`);

  // (d) Density: idle containers; memory of berth's processes (monitors + agents), PSS.
  const servicePids = SERVICES.map((n) => s.procs.get(n)?.pid ?? 0);
  const before = servicePids.reduce((a, p) => a + pssKiB(p), 0);
  const ids: string[] = [];
  const d0 = performance.now();
  for (let i = 0; i < DENSITY; i++) {
    const c = await client['create-container']({ image: IMAGE, cmd: ['sleep', '3600'], node: s.node });
    await client.create({ id: c.id });
    await client.start({ id: c.id });
    ids.push(c.id);
  }
  const dT = performance.now() - d0;
  const conmons = pidsOf('conmon', s.stateRoot);
  const monitorPss = conmons.reduce((a, p) => a + pssKiB(p), 0);
  const monitorRss = conmons.reduce((a, p) => a + rssKiB(p), 0);
  const after = servicePids.reduce((a, p) => a + pssKiB(p), 0);
  say(
    `(d) density: ${DENSITY} idle \`sleep\` containers started in ${f(dT)} ms; ${conmons.length} monitors (conmon)`,
  );
  say(
    `    monitors: PSS ${f(monitorPss / 1024)} MiB total, ${f(monitorPss / Math.max(1, conmons.length))} KiB each (RSS ${f(monitorRss / Math.max(1, conmons.length))} KiB each)`,
  );
  for (const [i, n] of SERVICES.entries()) {
    say(`    ${n}: PSS ${f(pssKiB(servicePids[i] ?? 0) / 1024)} MiB`);
  }
  say(
    `    agents (4 services): PSS ${f(before / 1024)} MiB before, ${f(after / 1024)} MiB with ${DENSITY} containers (+${f((after - before) / DENSITY)} KiB per container)`,
  );
  say(
    `    berth per container (monitor + agents' growth): ${f((monitorPss + (after - before)) / DENSITY)} KiB; including the agents' whole footprint: ${f((monitorPss + after) / DENSITY)} KiB`,
  );
  await Promise.all(ids.map((id) => client['delete-container']({ id, force: true })));

  // (a') the same through the CLI (`berth run --rm`), which adds a Node process start per run.
  const cli: number[] = [];
  for (let i = 0; i < Math.min(N, 20); i++) {
    const a = performance.now();
    const r = await s.berth(['run', '--rm', IMAGE, 'true']);
    if (r.code !== 0) throw new Error(`berth run failed: ${r.stderr}`);
    cli.push(performance.now() - a);
  }
  say(summary("(a') CLI `berth run --rm IMAGE true`", cli));

  // (e) containerd, when installed: a private daemon (temp root, own socket, CRI plugin off).
  if (existsSync('/usr/bin/ctr') && existsSync('/usr/bin/containerd')) {
    const ctd = await startContainerd(join(s.root, 'containerd'));
    try {
      execFileSync(
        'ctr',
        [
          '-a',
          ctd.sock,
          'images',
          'import',
          '--index-name',
          'berth/busybox:latest',
          join(s.root, 'busybox-oci.tar'),
        ],
        { stdio: 'ignore' },
      );
      const ctrRun = (id: string) => {
        const a = performance.now();
        const r = spawnSync('ctr', ['-a', ctd.sock, 'run', '--rm', 'berth/busybox:latest', id, 'true'], {
          stdio: 'ignore',
        });
        if (r.status !== 0) throw new Error(`ctr run exited ${r.status}`);
        return performance.now() - a;
      };
      ctrRun('warm');
      const ctr: number[] = [];
      for (let i = 0; i < N; i++) ctr.push(ctrRun(`seq-${i}`));
      say(
        summary(
          `(e) containerd ${execFileSync('containerd', ['--version']).toString().split(' ')[2]?.trim()}: \`ctr run --rm\` of \`true\``,
          ctr,
        ),
      );
      say(
        `    ratios (p50): berth API/ctr ${(pct(seq, 50) / pct(ctr, 50)).toFixed(2)}x, berth CLI/ctr ${(pct(cli, 50) / pct(ctr, 50)).toFixed(2)}x, ctr/runc ${(pct(ctr, 50) / pct(raw, 50)).toFixed(2)}x`,
      );
      const ids = Array.from({ length: DENSITY }, (_, i) => `idle-${i}`);
      for (const id of ids) {
        execFileSync('ctr', ['-a', ctd.sock, 'run', '-d', 'berth/busybox:latest', id, 'sleep', '3600'], {
          stdio: 'ignore',
        });
      }
      const allShims = pidsOf('containerd-shim-runc-v2', ctd.sock);
      const shimPss = allShims.reduce((a, p) => a + pssKiB(p), 0);
      say(
        `    containerd density: ${DENSITY} idle containers, ${allShims.length} shims, PSS ${f(shimPss / Math.max(1, allShims.length))} KiB per shim; containerd itself PSS ${f(pssKiB(ctd.pid) / 1024)} MiB`,
      );
      for (const id of ids) {
        spawnSync('ctr', ['-a', ctd.sock, 'task', 'kill', '-s', 'SIGKILL', id], { stdio: 'ignore' });
      }
      for (const id of ids) {
        for (let t = 0; t < 100; t++) {
          const r = spawnSync('ctr', ['-a', ctd.sock, 'task', 'delete', id], { stdio: 'ignore' });
          if (r.status === 0) break;
          await new Promise((res) => setTimeout(res, 20));
        }
        spawnSync('ctr', ['-a', ctd.sock, 'container', 'delete', id], { stdio: 'ignore' });
      }
    } finally {
      await ctd.stop();
    }
  } else {
    say('(e) containerd is not installed on this machine: no ctr comparison in this run');
  }
  sub.unsubscribe();
} finally {
  await s.stop();
  await rm(join(s.root), { recursive: true, force: true });
}
