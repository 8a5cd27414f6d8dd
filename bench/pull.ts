/**
 * Pull benchmark (issue 3). Prints figures; asserts nothing.
 *  (a) one generated image of >= 200 MB (4 layers of incompressible data, uncompressed tar) pulled
 *      from a docker-registry on loopback into an empty store by one image-service replica
 *      (blobs only: download, sha256 verify, fsync, rename; no unpack)
 *  (b) 4 such images pulled at once with 1 replica, then (c) with 2 replicas sharing the store
 *  (d) with containerd installed: a private containerd fetching the same image from the same
 *      registry (`ctr content fetch`, no unpack: the same work) and `ctr images pull` (with unpack)
 * Run: pnpm --filter @berth/bench run pull   Env: BENCH_RUNS (3), BENCH_LAYER_MB (52), BENCH_LAYERS (4),
 * BENCH_V8_FLAGS (space-separated V8 flags for the image-service processes; none by default, while
 * `berth up` gives them the stack's, e.g. "--optimize-for-size --liftoff-only").
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { ImageApi } from '@berth/api';
import { call } from '@berth/kit';
import { tarBuffer } from '@berth/tar';
import { startNats, startRedis, startRegistry, tempDir } from '@berth/testing';
import { connect } from 'nats';
import {
  type FixtureImage,
  makeImage,
  makeLayer,
  type ServiceProcess,
  startImageService,
  uploadImage,
} from '../packages/image-service/dist/testing/index.js';
import { startContainerd } from './containerd.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const LAYER_MB = Number(process.env.BENCH_LAYER_MB ?? 52);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 4);
const V8_FLAGS = (process.env.BENCH_V8_FLAGS ?? '').split(' ').filter(Boolean);
const MB = 1e6;
const say = (s: string) => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';

/** An image of LAYERS layers, each one file of LAYER_MB random bytes in an uncompressed tar. */
function bigImage(seed: number): FixtureImage {
  const layers = Array.from({ length: LAYERS }, (_, i) =>
    makeLayer(
      tarBuffer([
        {
          name: `data/${seed}-${i}.bin`,
          type: 'file',
          mode: 0o644,
          data: randomBytes(LAYER_MB * 1024 * 1024),
        },
      ]),
      'none',
    ),
  );
  return makeImage(layers, { arch });
}

const bytesOf = (img: FixtureImage) =>
  [...img.blobs.values()].reduce((s, b) => s + b.length, 0) + img.manifest.length;

async function main(): Promise<void> {
  const [nats, redis, registry] = await Promise.all([
    startNats({ jetstream: false }),
    startRedis({ appendonly: false }),
    startRegistry(),
  ]);
  const nc = await connect({ servers: nats.url });
  const work = await tempDir('bench-pull');
  const procs: ServiceProcess[] = [];
  try {
    say(
      `berth pull benchmark: node ${process.version}, ${execFileSync('nproc').toString().trim()} cores, load average ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}, registry docker-registry on 127.0.0.1, V8 flags: ${V8_FLAGS.join(' ') || 'none'}`,
    );
    // Only sizes are kept: the 1 GB of generated layers is dropped once uploaded.
    const sizes: number[] = [];
    const layerBytes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const img = bigImage(i);
      await uploadImage(registry.url, `bench/img${i}`, 'v1', img);
      sizes.push(bytesOf(img));
      layerBytes.push(img.layers.reduce((s, l) => s + l.blob.length, 0));
    }
    const size = (i: number) => sizes[i] as number;
    say(
      `image: ${LAYERS} layers x ${LAYER_MB} MiB random data (uncompressed tar), ${(size(0) / MB).toFixed(1)} MB per image`,
    );

    let runId = 0;
    /** Fresh node id and state root (an empty store), `replicas` processes. */
    const fresh = async (replicas: number) => {
      for (const p of procs.splice(0)) await p.kill();
      const node = `bench${runId++}`;
      const stateRoot = join(work, node);
      await mkdir(stateRoot, { recursive: true });
      for (let r = 0; r < replicas; r++) {
        procs.push(
          await startImageService({
            nc,
            natsUrl: nats.url,
            redisUrl: redis.url,
            node,
            stateRoot,
            configDir: work,
            name: `${node}-${r}`,
            v8Flags: V8_FLAGS,
          }),
        );
      }
      return { node, stateRoot };
    };
    // The replicas stop first: a service still writes under its state root after it replied (its
    // spans go to <stateRoot>/traces), and a recursive rm racing those writes fails with ENOTEMPTY.
    const dropStore = async (stateRoot: string) => {
      for (const p of procs.splice(0)) await p.kill();
      await rm(stateRoot, { recursive: true, force: true });
    };
    const pull = (node: string, i: number) =>
      call(
        nc,
        ImageApi,
        'pull',
        { ref: `${registry.host}/bench/img${i}:v1`, unpack: false },
        { node, timeoutMs: 600_000 },
      );

    // (a) one image, one replica; (d) containerd on the same image, interleaved run by run so
    // that load from other processes on the machine hits both alike.
    const haveCtd = existsSync('/usr/bin/ctr') && existsSync('/usr/bin/containerd');
    const single: number[] = [];
    const fetches: number[] = [];
    const ctdPulls: number[] = [];
    const ref0 = `${registry.host}/bench/img0:v1`;
    for (let r = 0; r < RUNS; r++) {
      const { node, stateRoot } = await fresh(1);
      const t0 = performance.now();
      const rep = await pull(node, 0);
      single.push((performance.now() - t0) / 1000);
      if (rep.fetchedBytes !== layerBytes[0])
        throw new Error(`pull fetched ${rep.fetchedBytes} bytes, expected ${layerBytes[0]}`);
      await dropStore(stateRoot);
      if (!haveCtd) continue;
      for (const [list, args] of [
        [fetches, ['content', 'fetch', '--plain-http', ref0]],
        [ctdPulls, ['images', 'pull', '--plain-http', ref0]],
      ] as const) {
        const ctdDir = join(work, `ctd-${r}-${list === fetches ? 'f' : 'p'}`);
        const ctd = await startContainerd(ctdDir);
        try {
          const t1 = performance.now();
          const res = spawnSync('ctr', ['-a', ctd.sock, '-n', 'bench', ...args], { encoding: 'utf8' });
          if (res.status !== 0) throw new Error(`ctr ${args.join(' ')}: ${res.stderr}`);
          list.push((performance.now() - t1) / 1000);
        } finally {
          await ctd.stop();
          await rm(ctdDir, { recursive: true, force: true });
        }
      }
    }
    const a = median(single);
    say(
      `(a) 1 image, 1 replica: median ${a.toFixed(2)} s, ${(size(0) / MB / a).toFixed(1)} MB/s (runs: ${single.map((s) => s.toFixed(2)).join(', ')})`,
    );

    // (b)/(c) four images at once
    const four = async (replicas: number) => {
      const times: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        const { node, stateRoot } = await fresh(replicas);
        const t0 = performance.now();
        await Promise.all([1, 2, 3, 4].map((i) => pull(node, i)));
        times.push((performance.now() - t0) / 1000);
        await dropStore(stateRoot);
      }
      return times;
    };
    const total4 = [1, 2, 3, 4].reduce((s, i) => s + size(i), 0);
    for (const replicas of [1, 2]) {
      const t = await four(replicas);
      const m = median(t);
      say(
        `(${replicas === 1 ? 'b' : 'c'}) 4 images at once, ${replicas} replica${replicas > 1 ? 's' : ''}: median ${m.toFixed(2)} s, ${(total4 / MB / m).toFixed(1)} MB/s aggregate (${(total4 / MB).toFixed(0)} MB; runs: ${t.map((s) => s.toFixed(2)).join(', ')})`,
      );
    }
    for (const p of procs.splice(0)) await p.kill();

    if (haveCtd) {
      const version = execFileSync('containerd', ['--version']).toString().split(' ')[2]?.trim();
      const f = median(fetches);
      const p = median(ctdPulls);
      say(`(d) containerd ${version} (private daemon, fresh root per run, runs interleaved with (a)):`);
      say(
        `  ctr content fetch (no unpack, the same work as (a)): median ${f.toFixed(2)} s, ${(size(0) / MB / f).toFixed(1)} MB/s (runs: ${fetches.map((x) => x.toFixed(2)).join(', ')}); berth/containerd time ratio ${(a / f).toFixed(2)}`,
      );
      say(
        `  ctr images pull (with overlayfs unpack): median ${p.toFixed(2)} s, ${(size(0) / MB / p).toFixed(1)} MB/s (berth (a) does not unpack)`,
      );
    } else {
      say('(d) containerd is not installed on this machine: comparison skipped');
    }
  } finally {
    for (const p of procs) await p.kill().catch(() => undefined);
    await nc.close();
    await Promise.all([nats.stop(), redis.stop(), registry.stop()]);
    await rm(work, { recursive: true, force: true });
  }
}

await main();
