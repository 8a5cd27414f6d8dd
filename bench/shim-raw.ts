/**
 * Shim benchmark (issue 5): the shim agent alone, without the task-service. Prints figures; asserts nothing.
 *  (1) floor: raw `runc run` of `true` on a prepared bundle, N times
 *  (2) shim: create + start + wait + delete of `true` through the agent over NATS, N times (phases too)
 *  (3) density: D idle `sleep` tasks; memory (PSS and RSS) of their conmons and of the agent, per task
 * Env: BENCH_N (default 50), BENCH_DENSITY (default 100).
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShimApi } from '@berth/api';
import { client as clientOf, connectNats } from '@berth/kit';
import { startNats, startRedis, tempDir } from '@berth/testing';
import { pct, pidsOf, pssKiB, rssKiB, summary } from './measure.js';

const N = Number(process.env.BENCH_N ?? 50);
const DENSITY = Number(process.env.BENCH_DENSITY ?? 100);
const ns = 'bench';

const f = (n: number) => n.toFixed(1);
async function rootfs(dir: string): Promise<string> {
  await mkdir(join(dir, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp']) await mkdir(join(dir, d), { recursive: true });
  await copyFile('/usr/bin/busybox', join(dir, 'bin', 'busybox'));
  for (const a of ['sh', 'true', 'sleep']) await symlink('busybox', join(dir, 'bin', a));
  return dir;
}

async function spec(base: string, args: string[], cgroupsPath: string): Promise<Record<string, unknown>> {
  const s = JSON.parse(await readFile(join(base, 'config.json'), 'utf8')) as {
    process: Record<string, unknown>;
    root: Record<string, unknown>;
    linux: Record<string, unknown>;
  };
  s.process.args = args;
  s.process.terminal = false;
  s.root = { path: 'rootfs', readonly: false };
  s.linux.cgroupsPath = cgroupsPath;
  return s as unknown as Record<string, unknown>;
}

async function main(): Promise<void> {
  const work = await tempDir('bench-shim');
  const stateRoot = join(work, 'state');
  const runRoot = join(work, 'run');
  // The shim mounts only snapshots: the rootfs is laid out as snapshot 1 of the state root.
  const fs = await rootfs(join(stateRoot, 'snapshots', '1', 'fs'));
  const specDir = join(work, 'spec');
  await mkdir(specDir);
  execFileSync('runc', ['spec', '--bundle', specDir]);
  const nats = await startNats({ jetstream: false });
  const redis = await startRedis();
  const node = `bench-${process.pid}`;
  const main = fileURLToPath(new URL('../packages/shim/dist/main.js', import.meta.url));
  await writeFile(join(work, 'config.json'), '{}');
  const agent: ChildProcess = spawn(process.execPath, [main], {
    env: {
      ...process.env,
      BERTH_CONFIG: join(work, 'config.json'),
      BERTH_NATS_URL: nats.url,
      BERTH_REDIS_URL: redis.url,
      BERTH_NODE_ID: node,
      BERTH_STATE_ROOT: stateRoot,
      BERTH_RUN_ROOT: runRoot,
      BERTH_LOG_LEVEL: process.env.BENCH_AGENT_LOG ? 'info' : 'warn',
    },
    stdio: ['ignore', process.env.BENCH_AGENT_LOG ? 'inherit' : 'ignore', 'inherit'],
  });
  const nc = await connectNats({ url: nats.url, name: 'bench-shim' });
  const client = clientOf(nc, ShimApi, { node });
  for (let i = 0; ; i++) {
    try {
      await client.list({}, { timeoutMs: 500 });
      break;
    } catch (err) {
      if (i > 100) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  console.log(
    `shim benchmark: N=${N} density=${DENSITY} (runc ${spawnSync('runc', ['--version']).stdout.toString().split('\n')[0]})`,
  );
  try {
    // (1) raw runc run on a prepared bundle.
    const bundle = join(work, 'raw');
    await mkdir(join(bundle, 'rootfs'), { recursive: true });
    execFileSync('mount', ['--bind', fs, join(bundle, 'rootfs')]);
    const runcRoot = join(work, 'raw-runc');
    const raw: number[] = [];
    try {
      for (let i = 0; i < N; i++) {
        const id = `raw-${i}`;
        await writeFile(
          join(bundle, 'config.json'),
          JSON.stringify(await spec(specDir, ['true'], `/berth-bench/${node}/${id}`)),
        );
        const t0 = performance.now();
        const r = spawnSync('runc', ['--root', runcRoot, 'run', '--bundle', bundle, id], { stdio: 'ignore' });
        raw.push(performance.now() - t0);
        if (r.status !== 0) throw new Error(`runc run failed: ${r.status}`);
      }
    } finally {
      execFileSync('umount', [join(bundle, 'rootfs')]);
    }
    console.log(summary('(1) raw runc run true', raw));

    // (2) through the shim agent.
    const total: number[] = [];
    const phases = {
      create: [] as number[],
      start: [] as number[],
      wait: [] as number[],
      delete: [] as number[],
    };
    for (let i = 0; i < N; i++) {
      const id = `seq${i}`;
      const s = await spec(specDir, ['true'], `/berth-bench/${node}/${id}`);
      const t0 = performance.now();
      await client.create({
        namespace: ns,
        id,
        spec: s,
        rootfs: [{ type: 'bind', source: fs, options: ['rbind', 'rw'] }],
        terminal: false,
        stdin: false,
      });
      const t1 = performance.now();
      await client.start({ namespace: ns, id });
      const t2 = performance.now();
      const exit = await client.wait({ namespace: ns, id }, { timeoutMs: 30_000 });
      const t3 = performance.now();
      await client.delete({ namespace: ns, id });
      const t4 = performance.now();
      if (exit.exitCode !== 0) throw new Error(`true exited ${exit.exitCode}`);
      total.push(t4 - t0);
      phases.create.push(t1 - t0);
      phases.start.push(t2 - t1);
      phases.wait.push(t3 - t2);
      phases.delete.push(t4 - t3);
    }
    console.log(summary('(2) shim create+start+wait+delete true', total));
    for (const [k, v] of Object.entries(phases)) console.log(`    ${summary(k, v)}`);
    console.log(`    ratio shim/raw p50: ${(pct(total, 50) / pct(raw, 50)).toFixed(2)}x`);

    // (3) density.
    const agentBefore = pssKiB(agent.pid as number);
    const t0 = performance.now();
    for (let i = 0; i < DENSITY; i++) {
      const id = `idle${i}`;
      await client.create({
        namespace: ns,
        id,
        spec: await spec(specDir, ['sleep', '100000'], `/berth-bench/${node}/${id}`),
        rootfs: [{ type: 'bind', source: fs, options: ['rbind', 'rw'] }],
        terminal: false,
        stdin: false,
      });
      await client.start({ namespace: ns, id });
    }
    const upMs = performance.now() - t0;
    const mons = pidsOf('conmon', stateRoot);
    const pss = mons.reduce((a, p) => a + pssKiB(p), 0);
    const rss = mons.reduce((a, p) => a + rssKiB(p), 0);
    const agentPss = pssKiB(agent.pid as number);
    console.log(`(3) density: ${DENSITY} idle tasks started in ${f(upMs)} ms; ${mons.length} conmons`);
    console.log(`    conmon per task: PSS ${f(pss / mons.length)} KiB, RSS ${f(rss / mons.length)} KiB`);
    console.log(
      `    agent: PSS ${f(agentPss)} KiB (was ${f(agentBefore)} KiB idle): ${f((agentPss - agentBefore) / DENSITY)} KiB per task`,
    );
    console.log(
      `    berth per task (conmon PSS + agent PSS / tasks): ${f(pss / mons.length + agentPss / DENSITY)} KiB`,
    );
    const t1 = performance.now();
    for (let i = 0; i < DENSITY; i++) {
      const id = `idle${i}`;
      await client.kill({ namespace: ns, id, signal: 'KILL', all: true });
      await client.wait({ namespace: ns, id }, { timeoutMs: 30_000 });
      await client.delete({ namespace: ns, id });
    }
    console.log(`    teardown (kill+wait+delete each): ${f(performance.now() - t1)} ms`);
  } finally {
    const gone = once(agent, 'exit');
    agent.kill('SIGTERM');
    await gone;
    await nc.close();
    await nats.stop();
    await redis.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
