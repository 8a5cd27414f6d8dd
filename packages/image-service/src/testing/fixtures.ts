// Fixture images for tests and benchmarks, built from /usr/bin/busybox (busybox-static) by the
// project's own code: layers (gzip, zstd, plain), configs, manifests, indexes, and a raw uploader.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { type Descriptor, MediaType } from '@berth/api';
import { tarBuffer } from '@berth/tar';
import { DOCKER_LAYER_TAR } from '../registry/media.js';

/** sha256 digest of bytes. */
export const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export type Compression = 'gzip' | 'zstd' | 'none';

/** A built layer: the blob as stored and its DiffID. */
export interface Layer {
  blob: Buffer;
  desc: Descriptor;
  diffId: string;
}

/** A built single-platform image: all blobs by digest, and the manifest. */
export interface FixtureImage {
  manifest: Buffer;
  desc: Descriptor;
  config: Buffer;
  layers: Layer[];
  blobs: Map<string, Buffer>;
}

/** Compresses a tar as a layer blob. zstd uses the `zstd` CLI (Node 20's zlib has none). */
export function makeLayer(tar: Buffer, compression: Compression, docker = false): Layer {
  let blob = tar;
  let mediaType: string = docker ? DOCKER_LAYER_TAR : MediaType.ociLayer;
  if (compression === 'gzip') {
    blob = gzipSync(tar, { level: 1 });
    mediaType = docker ? MediaType.dockerLayerGzip : MediaType.ociLayerGzip;
  } else if (compression === 'zstd') {
    const r = spawnSync('zstd', ['-q', '-c', '-1'], { input: tar, maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr.toString()}`);
    blob = r.stdout;
    mediaType = docker ? MediaType.dockerLayerZstd : MediaType.ociLayerZstd;
  }
  return { blob, diffId: sha(tar), desc: { mediaType, digest: sha(blob), size: blob.length } };
}

/** A tar of busybox-static as /bin/busybox with /bin/sh pointing at it. */
export function busyboxTar(): Buffer {
  return tarBuffer([
    { name: 'bin/', type: 'dir', mode: 0o755 },
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: readFileSync('/usr/bin/busybox') },
    { name: 'bin/sh', type: 'symlink', mode: 0o777, linkname: 'busybox' },
  ]);
}

/** A tar with one small text file (distinct content per `tag`). */
export function fileTar(path: string, content: string | Buffer): Buffer {
  return tarBuffer([
    {
      name: path,
      type: 'file',
      mode: 0o644,
      data: Buffer.isBuffer(content) ? content : Buffer.from(content),
    },
  ]);
}

/** Builds a config + manifest for layers. */
export function makeImage(
  layers: Layer[],
  opts: {
    arch?: string;
    variant?: string;
    docker?: boolean;
    cmd?: string[];
    labels?: Record<string, string>;
    /** The config's `created` (default 2026-01-01T00:00:00Z). */
    created?: string;
  } = {},
): FixtureImage {
  const arch = opts.arch ?? 'amd64';
  const config = Buffer.from(
    JSON.stringify({
      architecture: arch,
      ...(opts.variant ? { variant: opts.variant } : {}),
      os: 'linux',
      created: opts.created ?? '2026-01-01T00:00:00Z',
      config: {
        Cmd: opts.cmd ?? ['/bin/sh'],
        Env: ['PATH=/bin'],
        ...(opts.labels ? { Labels: opts.labels } : {}),
      },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
  const configDesc: Descriptor = {
    mediaType: opts.docker ? MediaType.dockerConfig : MediaType.ociConfig,
    digest: sha(config),
    size: config.length,
  };
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: opts.docker ? MediaType.dockerManifest : MediaType.ociManifest,
      config: configDesc,
      layers: layers.map((l) => l.desc),
    }),
  );
  const blobs = new Map<string, Buffer>([[configDesc.digest, config]]);
  for (const l of layers) blobs.set(l.desc.digest, l.blob);
  return {
    manifest,
    desc: {
      mediaType: opts.docker ? MediaType.dockerManifest : MediaType.ociManifest,
      digest: sha(manifest),
      size: manifest.length,
    },
    config,
    layers,
    blobs,
  };
}

/** An index over images, each entry carrying its platform; `extra` adds raw entries (unknown types). */
export function makeIndex(
  images: { image: FixtureImage; arch: string; variant?: string }[],
  extra: Descriptor[] = [],
): { body: Buffer; desc: Descriptor } {
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: [
        ...extra,
        ...images.map(({ image, arch, variant }) => ({
          ...image.desc,
          platform: { architecture: arch, os: 'linux', ...(variant ? { variant } : {}) },
        })),
      ],
    }),
  );
  return { body, desc: { mediaType: MediaType.ociIndex, digest: sha(body), size: body.length } };
}

/**
 * Uploads blobs and a manifest to a registry with plain distribution API calls (POST + PUT), the
 * way any client would, independent of berth's push code.
 */
export async function uploadRaw(
  baseUrl: string,
  repo: string,
  blobs: Map<string, Buffer>,
  manifests: { ref: string; body: Buffer; mediaType: string }[],
  authorization?: string,
): Promise<void> {
  const h: Record<string, string> = authorization ? { authorization } : {};
  for (const [digest, body] of blobs) {
    const head = await fetch(`${baseUrl}/v2/${repo}/blobs/${digest}`, { method: 'HEAD', headers: h });
    if (head.status === 200) continue;
    const start = await fetch(`${baseUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: h });
    if (start.status !== 202) throw new Error(`upload start ${repo}: ${start.status} ${await start.text()}`);
    const loc = new URL(start.headers.get('location') as string, baseUrl);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, {
      method: 'PUT',
      headers: { ...h, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(body),
    });
    if (put.status !== 201) throw new Error(`upload ${digest} to ${repo}: ${put.status} ${await put.text()}`);
  }
  for (const m of manifests) {
    const put = await fetch(`${baseUrl}/v2/${repo}/manifests/${m.ref}`, {
      method: 'PUT',
      headers: { ...h, 'content-type': m.mediaType },
      body: new Uint8Array(m.body),
    });
    if (put.status !== 201) throw new Error(`manifest ${repo}:${m.ref}: ${put.status} ${await put.text()}`);
  }
}

/** Uploads one image under a tag. */
export function uploadImage(
  baseUrl: string,
  repo: string,
  tag: string,
  img: FixtureImage,
  authorization?: string,
): Promise<void> {
  return uploadRaw(
    baseUrl,
    repo,
    img.blobs,
    [{ ref: tag, body: img.manifest, mediaType: img.desc.mediaType }],
    authorization,
  );
}

/** Uploads a multi-platform index (and its images) under a tag. */
export async function uploadIndex(
  baseUrl: string,
  repo: string,
  tag: string,
  images: FixtureImage[],
  index: { body: Buffer; desc: Descriptor },
): Promise<void> {
  const blobs = new Map<string, Buffer>();
  for (const i of images) for (const [d, b] of i.blobs) blobs.set(d, b);
  await uploadRaw(baseUrl, repo, blobs, [
    ...images.map((i) => ({ ref: i.desc.digest, body: i.manifest, mediaType: i.desc.mediaType })),
    { ref: tag, body: index.body, mediaType: index.desc.mediaType },
  ]);
}
