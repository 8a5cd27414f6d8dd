import { createHash } from 'node:crypto';
import * as z from './lazy-zod.js';

/** A sha256 digest as OCI writes it. */
export const Digest = z.string().regex(/^sha256:[a-f0-9]{64}$/, 'digest must be sha256:<64 hex>');
export type Digest = z.infer<typeof Digest>;

/** OCI and Docker media types berth understands. */
export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;
export type MediaType = (typeof MediaType)[keyof typeof MediaType];

/** An OCI platform. */
export const Platform = z.object({
  architecture: z.string(),
  os: z.string(),
  'os.version': z.string().optional(),
  'os.features': z.array(z.string()).optional(),
  variant: z.string().optional(),
});
export type Platform = z.infer<typeof Platform>;

/** An OCI content descriptor. */
export const Descriptor = z.object({
  mediaType: z.string(),
  digest: Digest,
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: Platform.optional(),
});
export type Descriptor = z.infer<typeof Descriptor>;

/** The part of an image config (application/vnd.oci.image.config.v1+json) berth reads. */
export const ImageConfig = z.object({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  created: z.string().optional(),
  config: z
    .object({
      User: z.string().optional(),
      ExposedPorts: z.record(z.string(), z.unknown()).optional().nullable(),
      Env: z.array(z.string()).optional().nullable(),
      Entrypoint: z.array(z.string()).optional().nullable(),
      Cmd: z.array(z.string()).optional().nullable(),
      Volumes: z.record(z.string(), z.unknown()).optional().nullable(),
      WorkingDir: z.string().optional(),
      Labels: z.record(z.string(), z.string()).optional().nullable(),
      StopSignal: z.string().optional(),
    })
    .passthrough()
    .optional(),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(Digest) }),
  history: z.array(z.unknown()).optional(),
});
export type ImageConfig = z.infer<typeof ImageConfig>;

/**
 * Computes the ChainIDs of a stack of layers from their DiffIDs (image-spec config.md):
 * ChainID(L0) = DiffID(L0), ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)). The last
 * one names the snapshot an image's root filesystem is prepared on. The one implementation in berth.
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}
