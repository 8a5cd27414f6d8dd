/**
 * Footprint benchmark (issue 13). Prints figures; asserts nothing. For each mode (separate
 * processes, then co-hosted): `berth up` timed until every service answers, then the workload
 * (P pulls of distinct images from a local registry, L lifecycles of `berth run --rm IMAGE sh -c true`),
 * then an idle wait, then PSS and RSS of every process of the stack (supervisor, services,
 * embedded nats-server and redis-server) and the total. Beside them a private containerd (CRI
 * plugin on, as kubelet uses it) doing the same pulls and `ctr run --rm` lifecycles.
 * Env knobs for a quick run: FOOTPRINT_PULLS (100), FOOTPRINT_LIFECYCLES (200),
 * FOOTPRINT_IDLE_S (60), FOOTPRINT_MODES (separate,cohosted), FOOTPRINT_CONTAINERD (1; 0 skips it),
 * FOOTPRINT_NODE_OPTIONS (extra NODE_OPTIONS for the stack's processes, for experiments),
 * FOOTPRINT_V8_FLAGS (space-separated V8 flags for every process of the stack, as its
 * services.<name>.v8Flags, e.g. "--max-semi-space-size=1"), FOOTPRINT_BUNDLES (0: every process
 * runs from dist/ modules instead of its bundle, as BERTH_SERVICE_BUNDLES=0), FOOTPRINT_SAME_NODE_CALLS
 * (`nats` or `socket`: the stack's sameNodeCalls). The stack's processes get
 * MALLOC_ARENA_MAX=2 and MALLOC_MMAP_THRESHOLD_=131072 from the supervisor unless the environment
 * sets them: MALLOC_ARENA_MAX=16 (glibc's default on 2 cores) measures without the first cut;
 * glibc's dynamic threshold cannot be asked for by a value, so the second is measured with a build
 * without it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { busyboxTar, fileTar, makeImage, makeLayer, uploadImage } from '@berth/image-service/testing';
import { freePort, startRegistry, tempDir } from '@berth/testing';
import { isolatedEnv, runBerth } from '../tests/harness/berth.js';
import { makeStack, readStackState } from '../tests/harness/stack.js';

const SERVICES = ['shim', 'snapshot-service', 'image-service', 'task-service', 'cri-gateway'];

import { containerdInstalled, startContainerd } from './containerd.js';
import { loadText, pssKiB, rssKiB } from './measure.js';

const PULLS = Number(process.env.FOOTPRINT_PULLS ?? 100);
const LIFECYCLES = Number(process.env.FOOTPRINT_LIFECYCLES ?? 200);
const IDLE_S = Number(process.env.FOOTPRINT_IDLE_S ?? 60);
const MODES = (process.env.FOOTPRINT_MODES ?? 'separate,cohosted').split(',').filter(Boolean);
const WITH_CONTAINERD = process.env.FOOTPRINT_CONTAINERD !== '0' && containerdInstalled();

const mb = (kib: number) => (kib / 1024).toFixed(1);
const say = (l: string) => process.stdout.write(`${l}\n`);

/** One row per process: name, pid, PSS and RSS in MiB; then the total. */
function report(title: string, procs: { name: string; pid: number }[]): number {
  say(`\n${title} (load average ${loadText()})`);
  say(`  ${'process'.padEnd(22)} ${'pid'.padStart(8)} ${'PSS MB'.padStart(8)} ${'RSS MB'.padStart(8)}`);
  let pss = 0;
  let rss = 0;
  for (const p of procs) {
    const [a, b] = [pssKiB(p.pid), rssKiB(p.pid)];
    pss += a;
    rss += b;
    say(`  ${p.name.padEnd(22)} ${String(p.pid).padStart(8)} ${mb(a).padStart(8)} ${mb(b).padStart(8)}`);
  }
  say(`  ${'total'.padEnd(22)} ${''.padStart(8)} ${mb(pss).padStart(8)} ${mb(rss).padStart(8)}`);
  return pss;
}

const registry = await startRegistry();
const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const base = makeLayer(busyboxTar(), 'gzip');
const refs: string[] = [];
// Distinct images sharing the busybox layer: each pull fetches and unpacks a layer of its own.
for (let i = 0; i < Math.max(1, PULLS); i++) {
  const img = makeImage([base, makeLayer(fileTar(`etc/bench-${i}`, `image ${i}\n`), 'gzip')], { arch });
  await uploadImage(registry.url, 'bench/footprint', `v${i}`, img);
  refs.push(`${registry.host}/bench/footprint:v${i}`);
}
const runImage = refs[0] as string;
say(
  `footprint: ${PULLS} pulls, ${LIFECYCLES} lifecycles, ${IDLE_S} s idle; node ${process.version}; ` +
    `load average at start ${loadText()}`,
);

const totals: Record<string, number> = {};
const starts: Record<string, number> = {};
try {
  for (const mode of MODES) {
    const flags = (process.env.FOOTPRINT_V8_FLAGS ?? '').split(' ').filter(Boolean);
    const v8 = Object.fromEntries([...SERVICES, 'cohosted'].map((n) => [n, { v8Flags: flags }]));
    const iso = await isolatedEnv({
      ...(flags.length ? { config: { services: v8 } } : {}),
      env: {
        BERTH_EMBEDDED_NATS_PORT: String(await freePort()),
        BERTH_EMBEDDED_REDIS_PORT: String(await freePort()),
        ...(process.env.FOOTPRINT_NODE_OPTIONS ? { NODE_OPTIONS: process.env.FOOTPRINT_NODE_OPTIONS } : {}),
        ...(process.env.FOOTPRINT_BUNDLES ? { BERTH_SERVICE_BUNDLES: process.env.FOOTPRINT_BUNDLES } : {}),
        ...(process.env.FOOTPRINT_SAME_NODE_CALLS
          ? { BERTH_SAME_NODE_CALLS: process.env.FOOTPRINT_SAME_NODE_CALLS }
          : {}),
      },
    });
    const t0 = performance.now();
    const up = await runBerth(['up', ...(mode === 'cohosted' ? ['--cohosted'] : [])], { env: iso.env });
    starts[mode] = performance.now() - t0;
    const stack = makeStack(iso, up);
    try {
      if (up.code !== 0) throw new Error(`berth up (${mode}) failed:\n${up.stderr}`);
      say(`\n[${mode}] berth up until every service answered: ${starts[mode]?.toFixed(0)} ms`);
      const ran = readStackState(iso.runRoot)?.children.map(
        (c) => c.pid && readFileSync(`/proc/${c.pid}/cmdline`, 'utf8'),
      );
      const bundled = (ran ?? []).filter(
        (c) => typeof c === 'string' && c.includes('/dist/services/'),
      ).length;
      say(`[${mode}] processes running a bundle (dist/services): ${bundled}`);
      for (const ref of refs.slice(0, PULLS)) {
        const r = await stack.berth('pull', ref);
        if (r.code !== 0) throw new Error(`berth pull ${ref}: ${r.stderr}`);
      }
      for (let i = 0; i < LIFECYCLES; i++) {
        const r = await stack.berth('run', '--rm', runImage, 'sh', '-c', 'true');
        if (r.code !== 0) throw new Error(`berth run --rm (${i}): ${r.stderr}`);
      }
      say(`[${mode}] workload done; idle for ${IDLE_S} s`);
      await sleep(IDLE_S * 1000);
      const st = readStackState(iso.runRoot);
      if (!st) throw new Error('no supervisor state file');
      const procs = [
        { name: 'supervisor', pid: st.pid },
        ...st.children.filter((c) => c.pid !== null).map((c) => ({ name: c.name, pid: c.pid as number })),
      ];
      totals[mode] = report(`[${mode}] after the workload and ${IDLE_S} s idle`, procs);
    } finally {
      await stack.stop();
    }
  }

  if (WITH_CONTAINERD) {
    const dir = await tempDir('footprint-ctd');
    const cni = join(dir, 'cni');
    await mkdir(cni, { recursive: true });
    const ctd = await startContainerd(join(dir, 'ctd'), {
      mirrors: { [registry.host]: [registry.url] },
      cniConfDir: cni,
      sandboxImage: runImage,
    });
    try {
      const ctr = (...args: string[]) => execFileSync('ctr', ['-a', ctd.sock, ...args], { stdio: 'pipe' });
      for (const ref of refs.slice(0, PULLS)) ctr('images', 'pull', '--plain-http', ref);
      for (let i = 0; i < LIFECYCLES; i++) ctr('run', '--rm', runImage, `fp-${i}`, 'sh', '-c', 'true');
      await sleep(IDLE_S * 1000);
      totals.containerd = report(`[containerd] after the same workload and ${IDLE_S} s idle`, [
        { name: 'containerd', pid: ctd.pid },
      ]);
    } finally {
      await ctd.stop();
    }
  } else {
    say('\ncontainerd is not installed (or FOOTPRINT_CONTAINERD=0): no containerd row');
  }
} finally {
  await registry.stop();
}

say('\nsummary (PSS, MB):');
for (const [k, v] of Object.entries(totals)) say(`  ${k.padEnd(12)} ${mb(v)}`);
for (const [k, v] of Object.entries(starts))
  say(`  berth up (${k}) until every service answered: ${v.toFixed(0)} ms`);
