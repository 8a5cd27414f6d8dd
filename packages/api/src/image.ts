// Contracts of the image-service (NATS: berth.<node>.image.v1.<op>). Owned by the image-service
// work; other services rely on PullRequest, GetImageRequest and ImageRecord: extend, do not break.
import { z } from 'zod';
import { Descriptor, Digest, ImageConfig } from './oci.js';

/** Request of `pull`: a reference as a user types it (`busybox`, `host:5000/a/b@sha256:…`). */
export const PullRequest = z.object({
  ref: z.string().min(1),
  /** os/arch[/variant]; default the host's. */
  platform: z.string().optional(),
  /** Unpack into snapshots after pulling (default true). */
  unpack: z.boolean().optional(),
});
export type PullRequest = z.infer<typeof PullRequest>;

/** One image as berth stores it on a node. */
export const ImageRecord = z.object({
  /** Normalized name, e.g. docker.io/library/busybox:latest. */
  name: z.string(),
  /** What the name points at: a manifest or an index. */
  target: Descriptor,
  /** The platform manifest chosen on this node, its config digest and the parsed config. */
  manifest: Descriptor,
  configDigest: Digest,
  config: ImageConfig,
  /** ChainID of the top layer once unpacked (the snapshot a container's rootfs is prepared on). */
  chainId: z.string().optional(),
  /** Sum of the compressed layer sizes plus config and manifest. */
  size: z.number().int().nonnegative(),
  labels: z.record(z.string(), z.string()),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type ImageRecord = z.infer<typeof ImageRecord>;

/** Request of `get`: a reference or a digest/id prefix. */
export const GetImageRequest = z.object({ name: z.string().min(1) });
export type GetImageRequest = z.infer<typeof GetImageRequest>;
