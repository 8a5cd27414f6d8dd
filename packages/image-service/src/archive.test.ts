import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Code, MediaType } from '@berth/api';
import { tarBuffer } from '@berth/tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPlatform } from './images/platform.js';
import {
  busyboxTar,
  type FixtureImage,
  fileTar,
  makeImage,
  makeLayer,
  sha,
  uploadImage,
} from './testing/fixtures.js';
import { type ImageEnv, rejection, startImageEnv } from './testing/harness.js';

const run = promisify(execFile);
const arch = hostPlatform().architecture;
let env: ImageEnv;
let img: FixtureImage;
let ref: string;

beforeAll(async () => {
  env = await startImageEnv();
  img = makeImage(
    [
      makeLayer(busyboxTar(), 'gzip'),
      makeLayer(fileTar('etc/z', 'zstd'), 'zstd'),
      makeLayer(fileTar('etc/p', 'plain'), 'none'),
    ],
    { arch },
  );
  await uploadImage(env.registry.url, 'arc/img', 'v1', img);
  ref = `${env.registry.host}/arc/img:v1`;
});
afterAll(() => env?.stop());

describe('save (export)', () => {
  it('writes an OCI layout tar that skopeo reads and copies to a registry', async () => {
    const svc = env.service();
    await svc.pull({ ref, unpack: false }, 'default');
    const file = join(env.stateRoot, 'out.tar');
    const r = await svc.export({ names: [ref], path: file }, 'default');
    expect(r.size).toBeGreaterThan(img.layers[0]?.blob.length ?? 0);
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${file}`]);
    const info = JSON.parse(stdout) as { Digest: string; Layers: string[]; Architecture: string };
    expect(info.Digest).toBe(img.desc.digest);
    expect(info.Layers).toEqual(img.layers.map((l) => l.desc.digest));
    expect(info.Architecture).toBe(arch);
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      `oci-archive:${file}`,
      `docker://${env.registry.host}/arc/copied:v2`,
    ]);
    const back = await svc.pull({ ref: `${env.registry.host}/arc/copied:v2`, unpack: false }, 'default');
    expect(back.image.configDigest).toBe(sha(img.config));
  });

  it('refuses an unknown image naming it', async () => {
    const e = await rejection(
      env.service().export({ names: ['nope:v1'], path: join(env.stateRoot, 'x.tar') }, 'default'),
    );
    expect(e.code).toBe(Code.NOT_FOUND);
    expect(e.message).toContain('docker.io/library/nope:v1');
  });
});

describe('load (import)', () => {
  it('round-trips its own OCI layout tar into an empty store', async () => {
    const svc = env.service();
    const file = join(env.stateRoot, 'rt.tar');
    await svc.pull({ ref, unpack: false }, 'rt');
    await svc.export({ names: [ref], path: file }, 'rt');
    await svc.remove('rt', { name: ref });
    await svc.remove('default', { name: ref });
    await svc.remove('default', { name: `${env.registry.host}/arc/copied:v2` });
    expect(await env.blobFiles()).toEqual([]);
    const r = await svc.import({ path: file, unpack: false }, 'rt');
    expect(r.images.map((i) => i.name)).toEqual([ref]);
    expect(r.images[0]?.manifest.digest).toBe(img.desc.digest);
    expect((await env.blobFiles()).sort()).toEqual(
      [img.desc.digest, ...img.blobs.keys()].map((d) => d.slice(7)).sort(),
    );
    // The imported image is complete: GC keeps all of it.
    expect((await svc.gc('rt')).removedBlobs).toBe(0);
    expect(await env.ingestEntries()).toEqual([]);
  });

  it('loads an OCI archive written by skopeo', async () => {
    const file = join(env.stateRoot, 'sk.tar');
    await run('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci-archive:${file}:v9`]);
    const r = await env.service().import({ path: file, name: 'skopeo/img', unpack: false }, 'sk');
    expect(r.images[0]?.name).toBe('docker.io/skopeo/img:v9');
    expect(r.images[0]?.config.rootfs.diff_ids).toEqual(img.layers.map((l) => l.diffId));
  });

  it('loads an OCI layout tarred by GNU tar (directories, ./ prefixes, no ref annotation)', async () => {
    const dir = join(env.stateRoot, 'gnu-layout');
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    for (const [d, b] of [...img.blobs, [img.desc.digest, img.manifest] as const]) {
      await writeFile(join(dir, 'blobs', 'sha256', d.slice(7)), b);
    }
    await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [img.desc] }));
    const file = join(env.stateRoot, 'gnu.tar');
    await run('tar', ['-C', dir, '-cf', file, '.']);
    const r = await env.service().import({ path: file, name: 'gnu/img:7', unpack: false }, 'gnu');
    expect(r.images[0]?.name).toBe('docker.io/gnu/img:7');
    expect(r.images[0]?.manifest.digest).toBe(img.desc.digest);
  });

  it('loads a docker-save tar (uncompressed layer.tar files, RepoTags)', async () => {
    const layerTar = busyboxTar();
    const l2 = fileTar('etc/hello', 'hello');
    const config = Buffer.from(
      JSON.stringify({
        architecture: arch,
        os: 'linux',
        config: { Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [sha(layerTar), sha(l2)] },
      }),
    );
    const cid = sha(config).slice(7);
    const archive = tarBuffer([
      { name: `${cid}.json`, type: 'file', mode: 0o644, data: config },
      { name: 'aaa/', type: 'dir', mode: 0o755 },
      { name: 'aaa/layer.tar', type: 'file', mode: 0o644, data: layerTar },
      { name: 'bbb/layer.tar', type: 'file', mode: 0o644, data: l2 },
      {
        name: 'manifest.json',
        type: 'file',
        mode: 0o644,
        data: Buffer.from(
          JSON.stringify([
            {
              Config: `${cid}.json`,
              RepoTags: ['saved/app:1.0'],
              Layers: ['aaa/layer.tar', 'bbb/layer.tar'],
            },
          ]),
        ),
      },
      { name: 'repositories', type: 'file', mode: 0o644, data: Buffer.from('{}') },
    ]);
    const file = join(env.stateRoot, 'docker.tar');
    await writeFile(file, archive);
    const r = await env.service().import({ path: file, unpack: false }, 'dk');
    const rec = r.images[0];
    expect(rec?.name).toBe('docker.io/saved/app:1.0');
    expect(rec?.manifest.mediaType).toBe(MediaType.dockerManifest);
    expect(rec?.configDigest).toBe(sha(config));
    expect(rec?.config.rootfs.diff_ids).toEqual([sha(layerTar), sha(l2)]);
    // The rebuilt image exports and skopeo reads it.
    const out = join(env.stateRoot, 'dk-out.tar');
    await env.service().export({ names: ['saved/app:1.0'], path: out }, 'dk');
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${out}`]);
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toEqual([sha(layerTar), sha(l2)]);
  });

  it('rejects an archive whose blob does not match its name, committing nothing of it', async () => {
    const good = fileTar('x', 'x');
    const fake = `sha256:${'0'.repeat(64)}`;
    const archive = tarBuffer([
      { name: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { name: `blobs/sha256/${fake.slice(7)}`, type: 'file', mode: 0o644, data: good },
      {
        name: 'index.json',
        type: 'file',
        mode: 0o644,
        data: Buffer.from('{"schemaVersion":2,"manifests":[]}'),
      },
    ]);
    const file = join(env.stateRoot, 'bad.tar');
    await writeFile(file, archive);
    const e = await rejection(env.service().import({ path: file }, 'bad'));
    expect(e.code).toBe(Code.DATA_LOSS);
    expect(await env.blobFiles()).not.toContain(fake.slice(7));
    expect((await env.ingestEntries()).length).toBe(0);
  });

  it('refuses a file that is not an image archive, and a missing file', async () => {
    const file = join(env.stateRoot, 'junk.tar');
    await writeFile(
      file,
      tarBuffer([{ name: 'readme.txt', type: 'file', mode: 0o644, data: Buffer.from('hi') }]),
    );
    expect((await rejection(env.service().import({ path: file }, 'j'))).code).toBe(Code.INVALID_ARGUMENT);
    const e = await rejection(env.service().import({ path: '/nonexistent/x.tar' }, 'j'));
    expect(e.code).toBe(Code.NOT_FOUND);
    expect(e.message).toContain('/nonexistent/x.tar');
  });
});
