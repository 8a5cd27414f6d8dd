// End to end: an image with two layers (gzip and zstd; the second deletes a file and makes a
// directory opaque) is pushed to a local registry, pulled by the image-service, unpacked by the
// CLI through the snapshot-service, inspected with `berth snapshot ...`, mounted read-only with
// `berth mount` and released with `berth unmount`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ImageApi } from '@berth/api';
import { call } from '@berth/kit';
import { startRegistry, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack } from './containers-stack.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Builds a layer tar with GNU tar from a directory tree described as path -> content. */
function layerTar(dir: string, files: Record<string, string>): Buffer {
  mkdirSync(dir, { recursive: true });
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    if (p.endsWith('/')) mkdirSync(join(dir, p), { recursive: true });
    else writeFileSync(join(dir, p), content);
  }
  return execFileSync(
    'tar',
    ['--numeric-owner', '--owner=0', '--group=0', '--sort=name', '-C', dir, '-cf', '-', '.'],
    {
      maxBuffer: 1 << 28,
    },
  );
}

/** Writes an OCI layout with one image of the given layers and returns the diff_ids. */
function ociLayout(dir: string, layers: { tar: Buffer; zstd: boolean }[]): string[] {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer) => {
    const h = sha(b);
    writeFileSync(join(blobs, h), b);
    return { digest: `sha256:${h}`, size: b.length };
  };
  const descs = layers.map((l) => {
    const blob = l.zstd ? execFileSync('zstd', ['-q', '-c'], { input: l.tar }) : gzipSync(l.tar);
    return {
      mediaType: `application/vnd.oci.image.layer.v1.tar+${l.zstd ? 'zstd' : 'gzip'}`,
      ...put(blob),
    };
  });
  const diffIds = layers.map((l) => `sha256:${sha(l.tar)}`);
  const config = put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: diffIds },
      }),
    ),
  );
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: descs,
      }),
    ),
  );
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'v1' },
        },
      ],
    }),
  );
  return diffIds;
}

describe('berth snapshot, mount and image unpack', () => {
  let stack: ContainerStack;
  let registry: TestServer & { host: string };
  let ref: string;
  let diffIds: string[];
  let notUnpacked: string;

  beforeAll(async () => {
    [stack, registry] = await Promise.all([
      startContainerStack({ only: ['image-service', 'snapshot-service'] }),
      startRegistry(),
    ]);
    const work = join(stack.root, 'img');
    const l1 = layerTar(join(work, 'l1'), {
      'bin/': '',
      'bin/hello': 'hello from layer 1\n',
      'etc/': '',
      'etc/motd': 'old motd\n',
      'var/cache/': '',
      'var/cache/stale': 'stale\n',
    });
    const l2 = layerTar(join(work, 'l2'), {
      'etc/': '',
      'etc/.wh.motd': '',
      'var/cache/': '',
      'var/cache/.wh..wh..opq': '',
      'var/cache/fresh': 'fresh\n',
      'bin/': '',
      'bin/world': 'world from layer 2\n',
    });
    diffIds = ociLayout(join(work, 'layout'), [
      { tar: l1, zstd: false },
      { tar: l2, zstd: true },
    ]);
    ref = `${registry.host}/snaptest:v1`;
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout')}:v1`,
      `docker://${ref}`,
    ]);
    await call(stack.nc, ImageApi, 'pull', { ref, unpack: false }, { node: stack.node, timeoutMs: 120_000 });
    ociLayout(join(work, 'layout2'), [{ tar: layerTar(join(work, 'l3'), { only: 'only\n' }), zstd: false }]);
    notUnpacked = `${registry.host}/snaptest:other`;
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${join(work, 'layout2')}:v1`,
      `docker://${notUnpacked}`,
    ]);
    await call(
      stack.nc,
      ImageApi,
      'pull',
      { ref: notUnpacked, unpack: false },
      { node: stack.node, timeoutMs: 120_000 },
    );
  });
  afterAll(async () => {
    await registry?.stop();
    await stack?.stop();
  });

  it('unpacks an image into one committed snapshot per layer, once', async () => {
    const first = await stack.berth(['image', 'unpack', ref]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('2 layer(s) applied, 0 already unpacked');
    const again = await stack.berth(['image', 'unpack', ref]);
    expect(again.stdout).toContain('0 layer(s) applied, 2 already unpacked');

    const ls = await stack.berth(['snapshot', 'ls', '--filter', 'kind==committed']);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/KEY\s+PARENT\s+KIND/);
    expect(ls.stdout).toContain(diffIds[0]);
    const topKey = `sha256:${sha(Buffer.from(`${diffIds[0]} ${diffIds[1]}`))}`;
    expect(ls.stdout).toMatch(new RegExp(`${topKey}\\s+${diffIds[0]}\\s+committed`));
    // The image record now names its top chain, so containers can be created from the image.
    const rec = await call(stack.nc, ImageApi, 'get', { name: ref }, { node: stack.node, timeoutMs: 10_000 });
    expect(rec.chainId).toBe(topKey);
    const info = JSON.parse((await stack.berth(['snapshot', 'info', topKey])).stdout) as {
      parent: string;
      kind: string;
      labels: Record<string, string>;
    };
    expect(info).toMatchObject({ parent: diffIds[0], kind: 'committed' });
    expect(info.labels['berth.io/diff-id']).toBe(diffIds[1]);
    const usage = await stack.berth(['snapshot', 'usage', topKey]);
    expect(usage.stdout).toMatch(/KEY\s+SIZE\s+INODES/);

    const rm = await stack.berth(['snapshot', 'rm', diffIds[0] as string]);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toContain('child snapshot');
    const missing = await stack.berth(['snapshot', 'info', 'no-such-snapshot']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('snapshot "no-such-snapshot" not found');
  });

  it('mounts the image read-only, shows the merged tree, and unmounts', async () => {
    const dir = join(stack.root, 'mnt');
    const m = await stack.berth(['mount', ref, dir]);
    expect(m.code, m.stderr).toBe(0);
    try {
      const twice = await stack.berth(['mount', ref, dir]);
      expect(twice.code).toBe(1);
      expect(twice.stderr).toBe(
        `berth: ${dir} is already mounted by berth (snapshot "mount:${dir}"): run 'berth unmount ${dir}' first\n`,
      );
      expect(readFileSync(join(dir, 'bin/hello'), 'utf8')).toBe('hello from layer 1\n');
      expect(readFileSync(join(dir, 'bin/world'), 'utf8')).toBe('world from layer 2\n');
      expect(existsSync(join(dir, 'etc/motd'))).toBe(false);
      expect(readdirSync(join(dir, 'var/cache'))).toEqual(['fresh']);
      expect(() => writeFileSync(join(dir, 'bin/new'), 'x')).toThrow(/EROFS|read-only/);
      const views = await stack.berth(['snapshot', 'ls', '--filter', 'kind==view']);
      expect(views.stdout).toContain(`mount:${dir}`);
      const mounts = await stack.berth(['snapshot', 'mounts', `mount:${dir}`, dir]);
      expect(mounts.stdout).toMatch(/^mount -t overlay -o index=off,lowerdir=/);
    } finally {
      const u = await stack.berth(['unmount', dir]);
      expect(u.code, u.stderr).toBe(0);
    }
    expect(readdirSync(dir)).toEqual([]);
    const views = await stack.berth(['snapshot', 'ls', '-q', '--filter', 'kind==view']);
    expect(views.stdout.trim()).toBe('');
    const twice = await stack.berth(['unmount', dir]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('nothing is mounted');
  });

  it('mounts another name of unpacked content, refuses an image that is not unpacked', async () => {
    const other = `${registry.host}/snaptest:copy`;
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${ref}`,
      `docker://${other}`,
    ]);
    // The same content under another name is already unpacked: mount works through its chainID.
    await call(
      stack.nc,
      ImageApi,
      'pull',
      { ref: other, unpack: false },
      { node: stack.node, timeoutMs: 120_000 },
    );
    const ok = await stack.berth(['mount', other, join(stack.root, 'mnt2')]);
    expect(ok.code, ok.stderr).toBe(0);
    await stack.berth(['unmount', join(stack.root, 'mnt2')]);
    const notYet = await stack.berth(['mount', notUnpacked, join(stack.root, 'mnt3')]);
    expect(notYet.code).toBe(1);
    expect(notYet.stderr).toContain(`is not unpacked on this node: run 'berth image unpack ${notUnpacked}'`);
    const bad = await stack.berth(['mount', `${registry.host}/nope:v1`, join(stack.root, 'mnt4')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('not found');
  });
});
