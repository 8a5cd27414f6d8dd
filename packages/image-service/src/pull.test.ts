import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Code, MediaType } from '@berth/api';
import { keys } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import {
  busyboxTar,
  type FixtureImage,
  fileTar,
  makeImage,
  makeIndex,
  makeLayer,
  sha,
  uploadImage,
  uploadIndex,
  uploadRaw,
} from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';
import { type RegistryProxy, startProxy } from './testing/proxy.js';

let env: ImageEnv;
let img: FixtureImage;
let arm: FixtureImage;
const host = hostPlatform().architecture;
const other = host === 'amd64' ? 'arm64' : 'amd64';

beforeAll(async () => {
  env = await startImageEnv();
  img = makeImage(
    [
      makeLayer(busyboxTar(), 'gzip'),
      makeLayer(fileTar('etc/zstd.txt', 'zstd layer'), 'zstd'),
      makeLayer(fileTar('etc/plain.txt', 'plain layer'), 'none'),
    ],
    { arch: host },
  );
  arm = makeImage([makeLayer(fileTar('etc/arch', other), 'gzip')], { arch: other });
  await uploadImage(env.registry.url, 'test/multi', 'v1', img);
  await uploadRaw(env.registry.url, 'test/index', new Map([[sha(Buffer.from('x')), Buffer.from('x')]]), []);
  const unknown = {
    mediaType: 'application/vnd.example.unknown+json',
    digest: sha(Buffer.from('x')),
    size: 1,
  };
  await uploadIndex(
    env.registry.url,
    'test/index',
    'v1',
    [img, arm],
    makeIndex(
      [
        { image: arm, arch: other },
        { image: img, arch: host },
      ],
      [unknown],
    ),
  );
});
afterAll(async () => {
  await env?.stop();
});

describe('pull', () => {
  it('stores every blob verified under blobs/sha256 with records and gc refs, and writes the image record', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/test/multi:v1`;
    const r = await svc.pull({ ref, unpack: false }, 'default');
    expect(r.unpack).toBe('skipped');
    expect(r.image.name).toBe(ref);
    expect(r.image.target.digest).toBe(img.desc.digest);
    expect(r.image.configDigest).toBe(sha(img.config));
    expect(r.image.config.rootfs.diff_ids).toEqual(img.layers.map((l) => l.diffId));
    expect(r.fetchedBytes).toBe(img.layers.reduce((s, l) => s + l.blob.length, 0));
    expect(r.reference).toBe('created');
    for (const [digest, body] of img.blobs) {
      const onDisk = await readFile(join(env.blobsDir, digest.slice(7)));
      expect(sha(onDisk)).toBe(sha(body));
    }
    const man = await env.redis.hgetall(keys.content(env.node, img.desc.digest));
    const labels = JSON.parse(man.labels ?? '{}') as Record<string, string>;
    expect(labels['gc.ref.content.config']).toBe(sha(img.config));
    expect(labels['gc.ref.content.l.1']).toBe(img.layers[1]?.desc.digest);
    expect(await env.ingestEntries()).toEqual([]);
    expect(await svc.get('default', ref)).toMatchObject({ name: ref });
    expect(await svc.get('default', sha(img.config).slice(7, 19))).toMatchObject({ name: ref });
    // A second pull finds everything present and fetches nothing.
    const again = await svc.pull({ ref, unpack: false }, 'default');
    expect(again.fetchedBytes).toBe(0);
    expect(again.reference).toBe('unchanged');
    // The same content under its digest reference: a new name, nothing fetched.
    const byDigest = `${env.registry.host}/test/multi@${img.desc.digest}`;
    const pinned = await svc.pull({ ref: byDigest, unpack: false }, 'default');
    expect(pinned).toMatchObject({ fetchedBytes: 0, reference: 'created', image: { name: byDigest } });
  });

  it('says whether a pull created, moved or kept the name', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/test/moving:v1`;
    await uploadImage(env.registry.url, 'test/moving', 'v1', img);
    expect((await svc.pull({ ref, unpack: false }, 'default')).reference).toBe('created');
    expect((await svc.pull({ ref, unpack: false }, 'default')).reference).toBe('unchanged');
    const next = makeImage([makeLayer(fileTar('etc/next', 'next'), 'gzip')], { arch: host });
    await uploadImage(env.registry.url, 'test/moving', 'v1', next);
    const moved = await svc.pull({ ref, unpack: false }, 'default');
    expect(moved.reference).toBe('updated');
    expect(moved.image.target.digest).toBe(next.desc.digest);
  });

  it('picks the host platform from an index, skips unknown entries, and honours --platform', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/test/index:v1`;
    const r = await svc.pull({ ref, unpack: false }, 'p1');
    expect(r.image.target.mediaType).toBe(MediaType.ociIndex);
    expect(r.image.manifest.digest).toBe(img.desc.digest);
    const r2 = await svc.pull({ ref, unpack: false, platform: `linux/${other}` }, 'p2');
    expect(r2.image.manifest.digest).toBe(arm.desc.digest);
    expect(r2.image.config.architecture).toBe(other);
    const e = await rejection(svc.pull({ ref, unpack: false, platform: 'linux/s390x' }, 'p3'));
    expect(e.code).toBe(Code.NOT_FOUND);
    expect(e.message).toContain('linux/s390x');
    expect(e.message).toContain(ref);
  });

  it('refuses a single-platform image that does not match an explicit --platform', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/test/multi:v1`;
    const e = await rejection(svc.pull({ ref, unpack: false, platform: `linux/${other}` }, 'pm'));
    expect(e.code).toBe(Code.NOT_FOUND);
    expect(e.message).toMatch(`image "${ref}" is linux/${host}, not the requested platform linux/${other}`);
    expect(await rejection(svc.get('pm', ref))).toMatchObject({ code: Code.NOT_FOUND });
    // The matching platform, given explicitly, pulls as without --platform.
    const ok = await svc.pull({ ref, unpack: false, platform: `linux/${host}` }, 'pm');
    expect(ok.image.target.digest).toBe(img.desc.digest);
    const bad = await rejection(svc.pull({ ref, unpack: false, platform: 'linux' }, 'pm'));
    expect(bad.code).toBe(Code.INVALID_ARGUMENT);
    expect(bad.message).toContain(`"${ref}"`);
  });

  it('pulls Docker schema2 manifests with Docker layer media types', async () => {
    const docker = makeImage(
      [
        makeLayer(fileTar('etc/d1', 'docker gzip'), 'gzip', true),
        makeLayer(fileTar('etc/d2', 'docker tar'), 'none', true),
      ],
      { arch: host, docker: true },
    );
    await uploadImage(env.registry.url, 'test/docker', 'v1', docker);
    const r = await env.service().pull({ ref: `${env.registry.host}/test/docker:v1`, unpack: false }, 'dk');
    expect(r.image.manifest.mediaType).toBe(MediaType.dockerManifest);
    expect(r.image.config.rootfs.diff_ids).toEqual(docker.layers.map((l) => l.diffId));
  });

  it('reads the config of index entries that carry no platform', async () => {
    const idx = makeIndex([{ image: arm, arch: other }], [img.desc]);
    await uploadIndex(env.registry.url, 'test/noplat', 'v1', [img, arm], idx);
    const r = await env.service().pull({ ref: `${env.registry.host}/test/noplat:v1`, unpack: false }, 'np');
    expect(r.image.manifest.digest).toBe(img.desc.digest);
  });

  it('refuses an invalid reference naming it', async () => {
    const e = await rejection(env.service().pull({ ref: 'Bad//Name:' }, 'default'));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain('"Bad//Name:"');
  });

  it('answers NOT_FOUND naming the reference for an unknown repository or tag', async () => {
    const svc = env.service();
    for (const ref of [`${env.registry.host}/no/such:v1`, `${env.registry.host}/test/multi:nope`]) {
      const e = await rejection(svc.pull({ ref, unpack: false }, 'default'));
      expect(e.code).toBe(Code.NOT_FOUND);
      expect(e.message).toContain(`"${ref}"`);
    }
  });

  it('answers UNAVAILABLE naming the registry when nothing listens', async () => {
    const e = await rejection(env.service().pull({ ref: '127.0.0.1:1/a/b:c', unpack: false }, 'default'));
    expect(e.code).toBe(Code.UNAVAILABLE);
    expect(e.message).toContain('127.0.0.1:1/a/b:c');
  });

  it('keeps the blobs and the record when unpack fails, reporting it', async () => {
    const r = await env.service().pull({ ref: `${env.registry.host}/test/multi:v1` }, 'unpack');
    expect(r.unpack).toBe('failed');
    expect(r.unpackError).toContain('UNAVAILABLE');
    expect(r.image.chainId).toBeUndefined();
    expect(await env.service().get('unpack', `${env.registry.host}/test/multi:v1`)).toBeTruthy();
  });

  it('stores the chainId the snapshot-service returns', async () => {
    let got: { layers: number; diffIds: string[] } | undefined;
    const svc = env.service({
      ports: {
        unpack: async (layers, diffIds) => {
          got = { layers: layers.length, diffIds };
          return { chainId: 'sha256:chain', applied: layers.length, skipped: 0 };
        },
      },
    });
    const r = await svc.pull({ ref: `${env.registry.host}/test/multi:v1` }, 'unpack2');
    expect(r.unpack).toBe('done');
    expect(got).toEqual({ layers: 3, diffIds: img.layers.map((l) => l.diffId) });
    expect((await svc.get('unpack2', `${env.registry.host}/test/multi:v1`)).chainId).toBe('sha256:chain');
  });

  it('pulls through a per-host mirror first', async () => {
    const mirror = await startProxy({ upstream: env.registry.url });
    try {
      const svc = env.service({ settings: { hosts: { 'registry.invalid': { mirrors: [mirror.url] } } } });
      const r = await svc.pull({ ref: 'registry.invalid/test/multi:v1', unpack: false }, 'mirror');
      expect(r.image.name).toBe('registry.invalid/test/multi:v1');
      expect(mirror.count('HEAD', '/manifests/v1')).toBe(1);
    } finally {
      await mirror.stop();
    }
  });

  it("pulls through the mirrors of a hosts.toml (containerd's layout), with its headers", async () => {
    const seen: (string | undefined)[] = [];
    const mirror = await startProxy({
      upstream: env.registry.url,
      intercept: (req) => {
        seen.push(req.headers['x-berth-test'] as string | undefined);
        return false;
      },
    });
    const dir = join(env.stateRoot, 'certs.d');
    try {
      await mkdir(join(dir, 'hosts.invalid'), { recursive: true });
      await writeFile(
        join(dir, 'hosts.invalid', 'hosts.toml'),
        `server = "https://hosts.invalid"\n[host."${mirror.url}"]\n  capabilities = ["pull", "resolve"]\n  header = { x-berth-test = "from-hosts-toml" }\n`,
      );
      const svc = env.service({ settings: { hostsDirs: [dir] } });
      const r = await svc.pull({ ref: 'hosts.invalid/test/multi:v1', unpack: false }, 'hoststoml');
      expect(r.image.target.digest).toBe(img.desc.digest);
      expect(mirror.count('HEAD', '/manifests/v1')).toBe(1);
      expect(seen.length).toBeGreaterThan(0);
      expect(new Set(seen)).toEqual(new Set(['from-hosts-toml']));
      // A setting berth cannot honour yet fails the pull naming the file, instead of being ignored.
      await writeFile(
        join(dir, 'hosts.invalid', 'hosts.toml'),
        `[host."${mirror.url}"]\n  override_path = true\n`,
      );
      const e = await rejection(svc.pull({ ref: 'hosts.invalid/test/multi:v1', unpack: false }, 'hoststoml'));
      expect(e.code).toBe(Code.UNIMPLEMENTED);
      expect(e.message).toContain(
        `${join(dir, 'hosts.invalid', 'hosts.toml')}: override_path for ${mirror.url}`,
      );
    } finally {
      await mirror.stop();
    }
  });

  it('removes the ingest a writer killed between commit and clean-up left beside a committed blob', async () => {
    const svc = env.service();
    const ref = `${env.registry.host}/test/multi:v1`;
    await svc.pull({ ref, unpack: false }, 'leftover');
    const layer = img.layers[1]?.desc.digest.slice(7) ?? '';
    expect(await env.blobFiles()).toContain(layer);
    // What a SIGKILL right after the rename into blobs/ leaves: the ingest dir with its meta file.
    await mkdir(join(env.ingestDir, layer), { recursive: true });
    await writeFile(join(env.ingestDir, layer, 'meta'), '{}');
    const again = await svc.pull({ ref, unpack: false }, 'leftover');
    expect(again.fetchedBytes).toBe(0);
    expect(await env.ingestEntries()).not.toContain(layer);
  });
});

describe('faults', () => {
  let proxy: RegistryProxy;
  let mode: 'lie' | 'stall' | 'big' | 'schema1' | 'nohead' | 'hang' | 'none' = 'none';
  const hung: ServerResponse[] = [];
  let lying: FixtureImage;
  let stalling: FixtureImage;
  let rangeSeen: string | undefined;

  beforeAll(async () => {
    lying = makeImage([makeLayer(fileTar('a', 'lie'.repeat(1000)), 'gzip')], { arch: host });
    stalling = makeImage([makeLayer(Buffer.alloc(256 * 1024, 7), 'none')], { arch: host });
    await uploadImage(env.registry.url, 'fault/lie', 'v1', lying);
    await uploadImage(env.registry.url, 'fault/stall', 'v1', stalling);
    const lieLayer = lying.layers[0]?.desc.digest as string;
    const stallLayer = stalling.layers[0]?.desc.digest as string;
    proxy = await startProxy({
      upstream: env.registry.url,
      intercept: (req, res, path) => {
        if (path.endsWith(`/blobs/${stallLayer}`)) rangeSeen = req.headers.range;
        if (mode === 'lie' && path.endsWith(`/blobs/${lieLayer}`) && req.method === 'GET') {
          const body = Buffer.from(lying.layers[0]?.blob as Buffer);
          body[body.length - 10] = (body[body.length - 10] as number) ^ 0xff;
          res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
          res.end(body);
          return true;
        }
        if (mode === 'stall' && path.endsWith(`/blobs/${stallLayer}`) && req.method === 'GET') {
          const body = stalling.layers[0]?.blob as Buffer;
          res.writeHead(200, { 'content-length': body.length });
          res.write(body.subarray(0, 100_000));
          return true; // and never finish
        }
        if (mode === 'hang' && path.includes('/manifests/')) {
          hung.push(res); // accepted, never answered
          return true;
        }
        if (mode === 'nohead' && req.method === 'HEAD' && path.includes('/manifests/')) {
          // A registry (or proxy) that does not answer HEAD usefully: the client must GET.
          res.writeHead(405);
          res.end();
          return true;
        }
        if (mode === 'big' && path.endsWith('/manifests/big')) {
          const body = Buffer.alloc(5 * 1024 * 1024, 0x20);
          res.writeHead(200, {
            'content-type': MediaType.ociManifest,
            'content-length': body.length,
            'docker-content-digest': sha(body),
          });
          res.end(req.method === 'HEAD' ? undefined : body);
          return true;
        }
        if (mode === 'schema1' && path.endsWith('/manifests/old')) {
          const body = Buffer.from(
            JSON.stringify({ schemaVersion: 1, name: 'fault/old', tag: 'old', fsLayers: [] }),
          );
          res.writeHead(200, {
            'content-type': MediaType.dockerSchema1Signed,
            'content-length': body.length,
            'docker-content-digest': sha(body),
          });
          res.end(req.method === 'HEAD' ? undefined : body);
          return true;
        }
        return false;
      },
    });
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  it('rejects a blob whose bytes do not match its digest: nothing committed, ingest removed', async () => {
    mode = 'lie';
    const e = await rejection(
      env.service().pull({ ref: `${proxy.host}/fault/lie:v1`, unpack: false }, 'lie'),
    );
    expect(e.code).toBe(Code.DATA_LOSS);
    expect(e.message).toContain(lying.layers[0]?.desc.digest);
    expect(e.message).toContain(`${proxy.host}/fault/lie:v1`);
    expect(await env.blobFiles()).not.toContain(lying.layers[0]?.desc.digest.slice(7));
    expect(await env.ingestEntries()).toEqual([]);
    await expect(env.service().get('lie', `${proxy.host}/fault/lie:v1`)).rejects.toMatchObject({
      code: Code.NOT_FOUND,
    });
  });

  it('falls back to GET when HEAD does not resolve the reference', async () => {
    mode = 'nohead';
    const ref = `${proxy.host}/fault/lie:v1`;
    const before = proxy.count('GET', '/manifests/v1');
    const r = await env.service().pull({ ref, unpack: false }, 'nohead');
    expect(r.image.manifest.digest).toBe(lying.desc.digest);
    expect(proxy.count('GET', '/manifests/v1') - before).toBe(1);
    mode = 'none';
  });

  it('refuses a manifest over 4 MiB', async () => {
    mode = 'big';
    const e = await rejection(
      env.service().pull({ ref: `${proxy.host}/fault/big:big`, unpack: false }, 'big'),
    );
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toMatch(/over the \d+-byte limit/);
  });

  it('refuses Docker schema1 clearly', async () => {
    mode = 'schema1';
    const e = await rejection(
      env.service().pull({ ref: `${proxy.host}/fault/old:old`, unpack: false }, 'old'),
    );
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toContain('schema1');
  });

  it('fails a stalled download with a clear timeout, then resumes it with Range', async () => {
    mode = 'stall';
    const ref = `${proxy.host}/fault/stall:v1`;
    const svc = env.service({ settings: { progressTimeoutMs: 500 } });
    const e = await rejection(svc.pull({ ref, unpack: false }, 'stall'));
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(e.message).toContain('no progress for 500 ms');
    expect(e.message).toContain(stalling.layers[0]?.desc.digest);
    expect(await env.blobFiles()).not.toContain(stalling.layers[0]?.desc.digest.slice(7));
    mode = 'none';
    const r = await svc.pull({ ref, unpack: false }, 'stall');
    expect(rangeSeen).toBe('bytes=100000-');
    expect(r.fetchedBytes).toBe((stalling.layers[0]?.blob.length ?? 0) - 100_000);
    const stallDigest = stalling.layers[0]?.desc.digest ?? '';
    const onDisk = await readFile(join(env.blobsDir, stallDigest.slice(7)));
    expect(createHash('sha256').update(onDisk).digest('hex')).toBe(stalling.layers[0]?.desc.digest.slice(7));
  });

  it('fails a registry that never answers within the configured timeout, naming the reference', async () => {
    mode = 'hang';
    const ref = `${proxy.host}/fault/stall:v1`;
    try {
      const svc = env.service({ settings: { progressTimeoutMs: 500 } });
      const e = await rejection(svc.pull({ ref, unpack: false }, 'hang'));
      expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(e.message).toContain(`did not answer within 500 ms for "${ref}"`);
      expect(hung.length).toBeGreaterThan(0);
      // As a mirror, the same silent registry is skipped and the upstream answers.
      const viaMirror = env.service({
        settings: { progressTimeoutMs: 500, hosts: { [env.registry.host]: { mirrors: [proxy.url] } } },
      });
      const seen = hung.length;
      const r = await viaMirror.pull({ ref: `${env.registry.host}/test/multi:v1`, unpack: false }, 'hang');
      expect(r.image.target.digest).toBe(img.desc.digest);
      expect(hung.length).toBeGreaterThan(seen);
    } finally {
      mode = 'none';
      for (const r of hung.splice(0)) r.destroy();
    }
  });

  it('downloads at most maxConcurrentDownloads layers at a time', async () => {
    const wide = makeImage(
      Array.from({ length: 5 }, (_, i) => makeLayer(fileTar(`wide/${i}`, `layer ${i}`), 'none')),
      { arch: host },
    );
    await uploadImage(env.registry.url, 'fault/wide', 'v1', wide);
    const layers = new Set(wide.layers.map((l) => l.desc.digest));
    // Every layer GET gets its headers and then nothing: each download that starts stays in flight
    // until the stall timeout fails the pull, and no new one starts after that.
    const held: ServerResponse[] = [];
    const hold = await startProxy({
      upstream: env.registry.url,
      intercept: (req, res, path) => {
        const digest = path.split('/blobs/')[1];
        if (req.method !== 'GET' || !digest || !layers.has(digest)) return false;
        held.push(res);
        res.writeHead(200, { 'content-length': 64 });
        res.flushHeaders();
        return true;
      },
    });
    try {
      const svc = env.service({ settings: { maxConcurrentDownloads: 2, progressTimeoutMs: 800 } });
      const e = await rejection(svc.pull({ ref: `${hold.host}/fault/wide:v1`, unpack: false }, 'wide'));
      expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(e.message).toContain('no progress for 800 ms');
      expect(held).toHaveLength(2);
    } finally {
      for (const r of held) r.destroy();
      await hold.stop();
      // The stalled downloads keep their ingests for a resume; later tests expect none.
      for (const d of layers) await rm(join(env.ingestDir, d.slice(7)), { recursive: true, force: true });
    }
  });

  it('restarts cleanly when a partial ingest is longer than the blob', async () => {
    mode = 'none';
    const layer = stalling.layers[0] as (typeof stalling.layers)[number];
    const ref = `${proxy.host}/fault/stall:v1`;
    const svc = env.service();
    const rm = await svc.remove('stall', { name: ref });
    expect(rm.removed).toEqual([ref]);
    expect(rm.gc?.removedBlobs).toBeGreaterThanOrEqual(1);
    expect(await env.blobFiles()).not.toContain(layer.desc.digest.slice(7));
    // A leftover that cannot be a prefix of the blob: the pull must discard it, not trust it.
    const dir = join(env.ingestDir, layer.desc.digest.slice(7));
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'data'), Buffer.alloc(layer.blob.length + 10, 1));
    rangeSeen = 'unset';
    const r = await svc.pull({ ref, unpack: false }, 'stall2');
    expect(rangeSeen).toBeUndefined();
    expect(r.fetchedBytes).toBe(layer.blob.length);
    expect(await env.ingestEntries()).toEqual([]);
  });
});

describe('two replicas', () => {
  it('fetch each blob once when pulling the same image at the same moment', async () => {
    const big = makeImage(
      [1, 2, 3, 4].map((i) => makeLayer(Buffer.alloc(2 * 1024 * 1024, i), 'none')),
      { arch: host },
    );
    await uploadImage(env.registry.url, 'dedupe/img', 'v1', big);
    const proxy = await startProxy({ upstream: env.registry.url });
    try {
      const a = env.service({ ownRedis: true });
      const b = env.service({ ownRedis: true });
      const ref = `${proxy.host}/dedupe/img:v1`;
      const [ra, rb, rc] = await Promise.all([
        a.pull({ ref, unpack: false }, 'default'),
        b.pull({ ref, unpack: false }, 'default'),
        a.pull({ ref, unpack: false }, 'other'),
      ]);
      expect(ra.image.target.digest).toBe(rb.image.target.digest);
      for (const l of big.layers) expect(proxy.count('GET', `/blobs/${l.desc.digest}`)).toBe(1);
      expect(proxy.count('GET', `/blobs/${sha(big.config)}`)).toBe(1);
      expect(ra.fetchedBytes + rb.fetchedBytes + rc.fetchedBytes).toBe(
        big.layers.reduce((s, l) => s + l.blob.length, 0),
      );
    } finally {
      await proxy.stop();
    }
  });
});
