/**
 * Layer unpack benchmark (issue 4). Prints figures; asserts nothing.
 *  (a) apply: a generated 3-layer image (many small files, a few large ones, >= 200 MB of tar)
 *      written by the unpacker into fresh directories, uncompressed / gzip / zstd: MB/s of
 *      uncompressed tar applied (median of BENCH_RUNS)
 *  (b) unpack op: the snapshot-service process over NATS (snapshots, locks, DiffID check, commit)
 *  (c) end to end: image-service pull + unpack from a registry on loopback (fresh state per run)
 *  (d) with containerd installed: `ctr images pull` of the same image (fresh daemon per run), and
 *      its unpack alone (content fetched first), with the ratios
 * Run: pnpm --filter @berth/bench run unpack   Env: BENCH_RUNS (3), BENCH_SMALL (16000), BENCH_LARGE_MB (32).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIds, ImageApi, SnapshotApi } from '@berth/api';
import { call, hostLayout } from '@berth/kit';
import { applyLayer } from '@berth/snapshot-service';
import {
  compressLayer,
  type FixtureLayer,
  putBlob,
  putImage,
  writeOciLayout,
} from '@berth/snapshot-service/testing';
import { type TarWriteEntry, tarBuffer } from '@berth/tar';
import { startRegistry, tempDir } from '@berth/testing';
import { startContainerStack } from '../tests/e2e/containers-stack.js';
import { startContainerd } from './containerd.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SMALL = Number(process.env.BENCH_SMALL ?? 16_000);
const LARGE_MB = Number(process.env.BENCH_LARGE_MB ?? 32);
const MB = 1e6;

const say = (s: string) => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const runs = (xs: number[]) => `runs ${xs.map((x) => x.toFixed(2)).join(', ')} s`;
const f1 = (n: number) => n.toFixed(1);

/** Half random, half text: compresses about 2:1 like typical binaries and text mixed. */
function content(size: number, seed: number): Buffer {
  const half = Math.floor(size / 2);
  const text = Buffer.from(
    `line ${seed} lorem ipsum dolor sit amet consectetur adipiscing elit\n`.repeat(Math.ceil(half / 60) + 1),
  ).subarray(0, size - half);
  return Buffer.concat([randomBytes(half), text]);
}

function layers(): TarWriteEntry[][] {
  const t = 1_700_000_000;
  const small: TarWriteEntry[] = [{ name: 'usr/', type: 'dir', mode: 0o755, mtime: t }];
  for (let d = 0; d < 400; d++) small.push({ name: `usr/share/d${d}/`, type: 'dir', mode: 0o755, mtime: t });
  for (let i = 0; i < SMALL; i++) {
    // Log-uniform sizes from 200 B to 32 KiB (mean about 6.4 kB), like a distro's /usr.
    const size = Math.round(200 * Math.exp(Math.random() * Math.log(32_768 / 200)));
    small.push({
      name: `usr/share/d${i % 400}/f${i}`,
      type: 'file',
      mode: 0o644,
      mtime: t,
      data: content(size, i),
    });
    if (i % 10 === 0)
      small.push({ name: `usr/share/d${i % 400}/l${i}`, type: 'symlink', linkname: `f${i}`, mtime: t });
  }
  const large: TarWriteEntry[] = [{ name: 'opt/', type: 'dir', mode: 0o755, mtime: t }];
  for (let i = 0; i < 4; i++) {
    large.push({
      name: `opt/big${i}.bin`,
      type: 'file',
      mode: 0o755,
      mtime: t,
      data: {
        size: LARGE_MB * 1024 * 1024,
        chunks: function* () {
          for (let c = 0; c < LARGE_MB; c++) yield content(1024 * 1024, c);
        },
      },
    });
  }
  const top: TarWriteEntry[] = [
    { name: 'usr/', type: 'dir', mode: 0o755, mtime: t },
    { name: 'usr/share/', type: 'dir', mode: 0o755, mtime: t },
    { name: 'usr/share/d1/', type: 'dir', mode: 0o755, mtime: t },
    { name: 'usr/share/d1/.wh..wh..opq', type: 'file', mtime: t },
    { name: 'usr/share/.wh.d2', type: 'file', mtime: t },
    { name: 'etc/', type: 'dir', mode: 0o755, mtime: t },
    { name: 'etc/config', type: 'file', mode: 0o644, mtime: t, data: content(4096, 1) },
  ];
  return [small, large, top];
}

async function main(): Promise<void> {
  const work = await tempDir('bench-unpack');
  const blobs = join(work, 'blobs');
  say(`unpack benchmark: node ${process.version}, ${RUNS} run(s) each`);
  const t0 = Date.now();
  const tars = layers().map((l) => tarBuffer(l));
  const total = tars.reduce((n, t) => n + t.length, 0);
  const files = SMALL + 4;
  say(
    `image: 3 layers, ${files} files (${SMALL} small, 4 x ${LARGE_MB} MiB), ${f1(total / MB)} MB of tar (generated in ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );
  const kinds = ['none', 'gzip', 'zstd'] as const;
  const diffIds = tars.map((t) => `sha256:${createHash('sha256').update(t).digest('hex')}`);
  const built: Record<string, FixtureLayer[]> = {};
  for (const k of kinds) {
    built[k] = tars.map((tar, i) => {
      const { blob, mediaType } = compressLayer(tar, k);
      return { descriptor: putBlob(blobs, blob, mediaType), diffId: diffIds[i] as string };
    });
    const size = built[k].reduce((n, l) => n + l.descriptor.size, 0);
    say(`  ${k.padEnd(4)} blobs: ${f1(size / MB)} MB`);
  }

  // (a) the unpacker alone
  say('(a) apply (unpacker into fresh directories, layers in order, parents given)');
  const applyMBs: Record<string, number> = {};
  for (const k of kinds) {
    const times: number[] = [];
    const cpus: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const dirs = [0, 1, 2].map((i) => join(work, `apply-${k}-${r}-${i}`));
      for (const d of dirs) await mkdir(d, { recursive: true });
      // Start from clean page-cache state: earlier writes are flushed before timing.
      spawnSync('sync');
      const cpu0 = process.cpuUsage();
      const start = process.hrtime.bigint();
      for (let i = 0; i < 3; i++) {
        const l = built[k]?.[i] as FixtureLayer;
        const res = await applyLayer({
          blobPath: join(blobs, l.descriptor.digest.slice(7)),
          mediaType: l.descriptor.mediaType,
          root: dirs[i] as string,
          parents: dirs.slice(0, i).reverse(),
          maxUncompressedBytes: 1e12,
          what: `layer ${i}`,
        });
        if (res.diffId !== l.diffId) throw new Error(`diffID mismatch in layer ${i}`);
      }
      times.push(Number(process.hrtime.bigint() - start) / 1e9);
      const cpu = process.cpuUsage(cpu0);
      cpus.push((cpu.user + cpu.system) / 1e6);
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    }
    applyMBs[k] = total / MB / median(times);
    say(
      `  ${k.padEnd(4)}: median ${median(times).toFixed(2)} s (${runs(times)}), ${f1(applyMBs[k])} MB/s of tar, ${Math.round(files / median(times))} files/s; main-thread CPU ${median(cpus).toFixed(2)} s (${f1(total / MB / median(cpus))} MB per CPU-second)`,
    );
  }

  // (b) the unpack op of a snapshot-service process over NATS
  say('(b) snapshot-service `unpack` over NATS (prepare, apply, DiffID check, du, commit per layer)');
  const opMBs: number[] = [];
  {
    // The image-service answers the snapshot gc's chain-roots (it owns the image records).
    const stack = await startContainerStack({ only: ['image-service', 'snapshot-service'] });
    try {
      const storeBlobs = hostLayout({ stateRoot: stack.stateRoot, runRoot: stack.runRoot }).content.blobs;
      await mkdir(storeBlobs, { recursive: true });
      for (const l of built.gzip ?? [])
        await cp(join(blobs, l.descriptor.digest.slice(7)), join(storeBlobs, l.descriptor.digest.slice(7)));
      const req = { layers: (built.gzip ?? []).map((l) => l.descriptor), diffIds };
      const times: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        spawnSync('sync');
        const start = process.hrtime.bigint();
        const rep = await call(stack.nc, SnapshotApi, 'unpack', req, {
          node: stack.node,
          timeoutMs: 300_000,
        });
        times.push(Number(process.hrtime.bigint() - start) / 1e9);
        if (rep.applied !== 3) throw new Error(`expected 3 layers applied, got ${rep.applied}`);
        await call(stack.nc, SnapshotApi, 'gc', { graceMs: 0 }, { node: stack.node, timeoutMs: 600_000 });
      }
      const t = median(times);
      opMBs.push(total / MB / t);
      say(`  gzip: median ${t.toFixed(2)} s, ${f1(total / MB / t)} MB/s of tar (${runs(times)})`);
    } catch (err) {
      const p = stack.procs.get('snapshot-service');
      say(
        `  failed: ${(err as Error).message}; service exit ${p?.exitCode ?? p?.signalCode}\n${stack.output('snapshot-service').slice(-2000)}`,
      );
      throw err;
    } finally {
      await stack.stop();
    }
  }

  // (c) + (d): berth and containerd runs interleaved, so both see the same machine load.
  const haveCtd = existsSync('/usr/bin/ctr') && existsSync('/usr/bin/containerd');
  say(
    `(c) end to end from a registry on 127.0.0.1 (gzip layers, fresh state each run${haveCtd ? ', interleaved with containerd' : ''})`,
  );
  const registry = await startRegistry();
  const ref = `${registry.host}/bench/unpack:v1`;
  try {
    const image = putImage(blobs, built.gzip ?? []);
    writeOciLayout(join(work, 'layout'), blobs, image, 'v1');
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${ref}`,
    ]);
    const b = { pull: [] as number[], unpack: [] as number[] };
    const c = { pull: [] as number[], unpack: [] as number[] };
    for (let r = 0; r < RUNS; r++) {
      // berth: pull with unpack on a fresh node; then, on another fresh node, pull without unpack
      // and time the unpack op alone.
      for (const withUnpack of [true, false]) {
        const stack = await startContainerStack({ only: ['image-service', 'snapshot-service'] });
        try {
          const opts = { node: stack.node, timeoutMs: 600_000 };
          let start = process.hrtime.bigint();
          const rep = await call(stack.nc, ImageApi, 'pull', { ref, unpack: withUnpack }, opts);
          if (withUnpack) {
            b.pull.push(Number(process.hrtime.bigint() - start) / 1e9);
            if (rep.unpack !== 'done' || rep.image.chainId !== chainIds(diffIds)[2]) {
              throw new Error(`pull did not unpack: ${rep.unpack} ${rep.unpackError ?? ''}`);
            }
          } else {
            const req = { layers: (built.gzip ?? []).map((l) => l.descriptor), diffIds };
            spawnSync('sync');
            start = process.hrtime.bigint();
            await call(stack.nc, SnapshotApi, 'unpack', req, opts);
            b.unpack.push(Number(process.hrtime.bigint() - start) / 1e9);
          }
        } finally {
          await stack.stop();
        }
      }
      if (!haveCtd) continue;
      const ctdDir = join(work, `ctd-${r}`);
      const ctd = await startContainerd(ctdDir);
      try {
        const ctr = (args: string[]) => {
          const t = process.hrtime.bigint();
          const res = spawnSync('ctr', ['-a', ctd.sock, '-n', 'bench', ...args], { encoding: 'utf8' });
          if (res.status !== 0) throw new Error(`ctr ${args.join(' ')}: ${res.stderr}`);
          return Number(process.hrtime.bigint() - t) / 1e9;
        };
        c.pull.push(ctr(['images', 'pull', '--plain-http', ref]));
        ctr(['images', 'rm', '--sync', ref]);
        ctr(['content', 'fetch', '--plain-http', ref]);
        spawnSync('sync');
        c.unpack.push(ctr(['images', 'pull', '--plain-http', ref]));
      } finally {
        await ctd.stop();
        await rm(ctdDir, { recursive: true, force: true });
      }
    }
    const line = (who: string, what: string, xs: number[]) =>
      say(
        `  ${who} ${what}: median ${median(xs).toFixed(2)} s, ${f1(total / MB / median(xs))} MB/s of tar (${runs(xs)})`,
      );
    line('berth', 'pull+unpack', b.pull);
    line('berth', 'unpack op alone (blobs present)', b.unpack);
    if (haveCtd) {
      const version = execFileSync('containerd', ['--version']).toString().split(' ')[2]?.trim();
      say(`(d) containerd ${version} (overlayfs snapshotter, private daemon, CRI off):`);
      line('ctr', 'images pull (fetch+unpack)', c.pull);
      line('ctr', 'images pull with content present (unpack alone)', c.unpack);
      const ratio = (xs: number[], ys: number[]) =>
        median(xs.map((x, i) => x / (ys[i] as number))).toFixed(2);
      say(
        `  time ratio berth/containerd, median of per-run ratios: pull+unpack ${ratio(b.pull, c.pull)}, unpack alone ${ratio(b.unpack, c.unpack)}`,
      );
    } else {
      say('(d) containerd is not installed on this machine: no ctr comparison in this run');
    }
  } finally {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
