// A full disk under the content store and under an export's target, on small tmpfs mounts: every
// write path (download, import, export) fails with RESOURCE_EXHAUSTED naming the file, removes its
// partial data at once, the image-service process stays up, and a retry after freeing space works.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Code, ImageApi } from '@berth/api';
import { call } from '@berth/kit';
import { TAR_END, tarHeader, tarPadding } from '@berth/tar';
import { startNats, type TestServer, tempDir } from '@berth/testing';
import { connect, type NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContentStore } from './content/store.js';
import { hostPlatform } from './images/platform.js';
import { type FixtureImage, makeImage, makeLayer, sha, uploadImage } from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { type ServiceProcess, startImageService } from './testing/process.js';
import { type RegistryProxy, startProxy } from './testing/proxy.js';

const MiB = 1024 * 1024;
let env: ImageEnv;
let nats: TestServer;
let nc: NatsConnection;
let proc: ServiceProcess;
let img: FixtureImage;
let contentDir: string;
let outDir: string;
let scratch: string;
const mounts: string[] = [];
let proxy: RegistryProxy;
let unstall!: () => void;
const stall = new Promise<void>((r) => {
  unstall = r;
});

function mountTmpfs(dir: string, size: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'berth-test', dir]);
  mounts.push(dir);
}

const pull = (ref: string) =>
  call(
    nc,
    ImageApi,
    'pull',
    { ref, unpack: false },
    { node: env.node, namespace: 'default', timeoutMs: 60_000 },
  );

/** Everything under the ingest directory, one level deep (ingest/<hex>/<file>). */
async function ingestFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const d of await env.ingestEntries()) {
    out.push(d, ...(await readdir(join(env.ingestDir, d)).catch(() => [])).map((f) => `${d}/${f}`));
  }
  return out;
}

beforeAll(async () => {
  [env, nats, scratch] = await Promise.all([
    startImageEnv(),
    startNats({ jetstream: false }),
    tempDir('disk-full'),
  ]);
  nc = await connect({ servers: nats.url });
  // 12 MiB that no filesystem compresses, in one layer: more than the 8 MiB content store holds.
  img = makeImage([makeLayer(randomBytes(12 * MiB), 'none')], { arch: hostPlatform().architecture });
  await uploadImage(env.registry.url, 'full/big', 'v1', img);
  // Two layers downloaded side by side: the small one's registry sends a part and stalls, and only
  // then is the big one served, which fills the disk; the small one is stopped mid-download.
  const two = makeImage([makeLayer(randomBytes(12 * MiB), 'none'), makeLayer(randomBytes(2 * MiB), 'none')], {
    arch: hostPlatform().architecture,
  });
  await uploadImage(env.registry.url, 'full/two', 'v1', two);
  const [bigLayer, smallLayer] = two.layers.map((l) => l.desc.digest);
  let partialSent!: () => void;
  const partial = new Promise<void>((r) => {
    partialSent = r;
  });
  proxy = await startProxy({
    upstream: env.registry.url,
    intercept: async (req, res, path) => {
      if (req.method !== 'GET' || req.headers.range) return false;
      if (path.endsWith(`/blobs/${bigLayer}`)) {
        await partial;
        return false;
      }
      if (!path.endsWith(`/blobs/${smallLayer}`)) return false;
      const body = two.layers[1]?.blob ?? Buffer.alloc(0);
      res.writeHead(200, { 'content-length': body.length });
      res.write(body.subarray(0, 512 * 1024), () => partialSent());
      await stall;
      res.destroy();
      return true;
    },
  });
  contentDir = dirname(env.ingestDir);
  await mkdir(contentDir, { recursive: true });
  mountTmpfs(contentDir, '8m');
  outDir = join(scratch, 'out');
  await mkdir(outDir);
  mountTmpfs(outDir, '1m');
  proc = await startImageService({
    nc,
    natsUrl: nats.url,
    redisUrl: env.redisServer.url,
    node: env.node,
    stateRoot: env.stateRoot,
    configDir: scratch,
  });
});

afterAll(async () => {
  unstall();
  await proxy?.stop();
  await proc?.kill('SIGKILL').catch(() => undefined);
  for (const m of mounts.reverse()) execFileSync('umount', ['-l', m]);
  await nc?.close();
  await Promise.all([env?.stop(), nats?.stop()]);
  execFileSync('rm', ['-rf', scratch]);
});

describe('a full disk under the image-service', () => {
  it('fails a pull with RESOURCE_EXHAUSTED naming the ingest file, leaves no ingest, and keeps serving', async () => {
    const ref = `${env.registry.host}/full/big:v1`;
    const layer = img.layers[0]?.desc.digest ?? '';
    const err = await rejection(pull(ref));
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain(join(env.ingestDir, layer.slice(7)));
    expect(err.message).toContain('ENOSPC');
    expect(err.message).toContain('partial download was removed');
    // The partial data is gone at once, not after GC's hour.
    expect(await ingestFiles()).toEqual([]);
    expect(proc.proc.exitCode).toBeNull();
    const listed = await call(nc, ImageApi, 'list', {}, { node: env.node, namespace: 'default' });
    expect(listed.images.map((i) => i.name)).not.toContain(ref);
    expect(proc.output()).not.toMatch(/unhandled|uncaught/i);
  });

  it('removes the partial data of every layer of a pull that met a full disk, stopped ones too', async () => {
    const err = await rejection(pull(`${proxy.host}/full/two:v1`));
    unstall();
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain(env.ingestDir);
    expect(await ingestFiles()).toEqual([]);
    expect(proc.proc.exitCode).toBeNull();
  });

  it('fails an import with RESOURCE_EXHAUSTED naming its temp file and removes it', async () => {
    const blob = randomBytes(12 * MiB);
    const archive = join(scratch, 'big.tar');
    await writeFile(
      archive,
      Buffer.concat([
        tarHeader({ name: `blobs/sha256/${sha(blob).slice(7)}`, type: 'file', mode: 0o644 }, blob.length),
        blob,
        tarPadding(blob.length),
        TAR_END,
      ]),
    );
    const err = await rejection(
      call(nc, ImageApi, 'import', { path: archive }, { node: env.node, namespace: 'default' }),
    );
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain(`${env.ingestDir}/tmp-`);
    expect(err.message).toContain(`archive "${archive}"`);
    expect(await ingestFiles()).toEqual([]);
    expect(proc.proc.exitCode).toBeNull();
  });

  it('fails a download whose write fails while the next bytes are awaited, without an unhandled rejection', async () => {
    const store = new ContentStore({
      blobsDir: env.blobsDir,
      ingestDir: env.ingestDir,
      redis: env.redis,
      node: env.node,
      lockTtlMs: 5000,
      lockWaitMs: 5000,
    });
    const rejected: unknown[] = [];
    const onRejection = (r: unknown) => rejected.push(r);
    process.on('unhandledRejection', onRejection);
    const blob = randomBytes(10 * MiB);
    const desc = { mediaType: 'application/octet-stream', digest: sha(blob), size: blob.length };
    const turns = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
    };
    // The first chunk is more than the disk holds (its write fills it), the second one's write
    // fails; the source then holds the last bytes back until that failure has come back and had
    // turns of the event loop to go unhandled (which ended the whole process before the fix).
    async function* body() {
      yield blob.subarray(0, 9 * MiB);
      while ((await statfs(contentDir)).bavail > 0) await turns(1);
      yield blob.subarray(9 * MiB, 9.5 * MiB);
      // A write of our own queued after it fails too: by then that failure has come back.
      const probe = join(contentDir, 'probe');
      await writeFile(probe, 'x').catch(() => undefined);
      await rm(probe, { force: true });
      await turns(50);
      yield blob.subarray(9.5 * MiB);
    }
    try {
      const err = await rejection(
        store.ingest(desc, async () => ({ offset: 0, body: body() }), {
          what: 'blob of the slow source',
          progressTimeoutMs: 10_000,
        }),
      );
      expect(rejected).toEqual([]);
      expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
      expect(err.message).toContain(join(env.ingestDir, desc.digest.slice(7)));
    } finally {
      process.off('unhandledRejection', onRejection);
    }
    expect(await ingestFiles()).toEqual([]);
  });

  it('pulls once space is freed', async () => {
    execFileSync('mount', ['-o', 'remount,size=64m', contentDir]);
    const ref = `${env.registry.host}/full/big:v1`;
    const r = await pull(ref);
    expect(r.image.target.digest).toBe(img.desc.digest);
    const layer = img.layers[0]?.desc.digest ?? '';
    expect(await env.blobFiles()).toContain(layer.slice(7));
    expect(await ingestFiles()).toEqual([]);
  });

  it('fails an export to a full disk with RESOURCE_EXHAUSTED naming the file, leaving nothing there', async () => {
    const path = join(outDir, 'big.tar');
    const err = await rejection(
      call(
        nc,
        ImageApi,
        'export',
        { names: [`${env.registry.host}/full/big:v1`], path },
        { node: env.node, namespace: 'default' },
      ),
    );
    expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain(outDir);
    expect(err.message).toContain('ENOSPC');
    expect(await readdir(outDir)).toEqual([]);
    expect(proc.proc.exitCode).toBeNull();
    expect(proc.output()).not.toMatch(/unhandled|uncaught/i);
  });
});
