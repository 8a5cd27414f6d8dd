import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type Descriptor, MediaType } from '@berth/api';
import { type TarWriteEntry, tarBuffer } from '@berth/tar';

const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A layer written into a blob directory: its descriptor and DiffID. */
export interface FixtureLayer {
  descriptor: Descriptor;
  diffId: string;
}

/** Compresses a tar as a layer blob of the given kind. */
export function compressLayer(
  tar: Buffer,
  kind: 'none' | 'gzip' | 'zstd',
): { blob: Buffer; mediaType: string } {
  if (kind === 'gzip') return { blob: gzipSync(tar), mediaType: MediaType.ociLayerGzip };
  if (kind === 'zstd') {
    const r = spawnSync('zstd', ['-c', '-q', '-3'], { input: tar, maxBuffer: 1 << 30 });
    if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
    return { blob: r.stdout, mediaType: MediaType.ociLayerZstd };
  }
  return { blob: tar, mediaType: MediaType.ociLayer };
}

/** Writes one blob as <dir>/<hex> (berth's content store layout) and returns its descriptor. */
export function putBlob(blobsDir: string, data: Buffer, mediaType: string): Descriptor {
  mkdirSync(blobsDir, { recursive: true });
  const digest = digestOf(data);
  writeFileSync(join(blobsDir, digest.slice(7)), data);
  return { mediaType, digest, size: data.length };
}

/** Builds a layer from tar entries and stores it in a blob directory. */
export function putLayer(
  blobsDir: string,
  entries: TarWriteEntry[],
  kind: 'none' | 'gzip' | 'zstd' = 'gzip',
): FixtureLayer {
  const tar = tarBuffer(entries);
  const { blob, mediaType } = compressLayer(tar, kind);
  return { descriptor: putBlob(blobsDir, blob, mediaType), diffId: digestOf(tar) };
}

/** A whole image in a blob directory: layers, config (with diff_ids) and manifest. */
export interface FixtureImage {
  layers: FixtureLayer[];
  config: Descriptor;
  manifest: Descriptor;
  configJson: Record<string, unknown>;
}

/** Builds an image (config + manifest) over layers already stored in blobsDir. */
export function putImage(blobsDir: string, layers: FixtureLayer[]): FixtureImage {
  const configJson = {
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  };
  const config = putBlob(blobsDir, Buffer.from(JSON.stringify(configJson)), MediaType.ociConfig);
  const manifestJson = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config,
    layers: layers.map((l) => l.descriptor),
  };
  const manifest = putBlob(blobsDir, Buffer.from(JSON.stringify(manifestJson)), MediaType.ociManifest);
  return { layers, config, manifest, configJson };
}

/**
 * Writes an OCI image layout (oci-layout, index.json, blobs/sha256) holding `image` under `tag`,
 * copying its blobs from blobsDir, for tools like umoci and skopeo.
 */
export function writeOciLayout(dir: string, blobsDir: string, image: FixtureImage, tag: string): void {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  for (const d of [image.config, image.manifest, ...image.layers.map((l) => l.descriptor)]) {
    const hex = d.digest.slice(7);
    spawnSync('cp', [join(blobsDir, hex), join(blobs, hex)]);
  }
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...image.manifest, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
}
