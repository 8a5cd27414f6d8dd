// Contracts of the image-service (NATS: berth.<node>.image.v1.<op>). Owned by the image-service
// work; other services rely on PullRequest, GetImageRequest and ImageRecord: extend, do not break.

import { defineService, Empty, eventTopicOf, op, Scope } from './contract.js';
import * as z from './lazy-zod.js';
import { Lease, LeaseCreateRequest, LeaseListReply, LeaseRef, LeaseResourcesRequest } from './lease.js';
import { Descriptor, Digest, ImageConfig } from './oci.js';
import { PAGE_MAX_BYTES, PageReply, PageRequest } from './paging.js';
import { Service } from './subjects.js';

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

/**
 * Largest image record (its JSON, mostly the image's config), in bytes (384 KiB). Every record
 * must fit in a reply (get, a page of list), so one that is larger is refused where it is made
 * (pull, import, tag) with INVALID_ARGUMENT. Three quarters of the page bound: a page always
 * has room for one.
 */
export const IMAGE_RECORD_MAX_BYTES = (PAGE_MAX_BYTES / 4) * 3;

/** Request of `get`: a reference or a digest/id prefix. */
export const GetImageRequest = z.object({ name: z.string().min(1) });
export type GetImageRequest = z.infer<typeof GetImageRequest>;

/** Reply of `unpack`: the image record with its chainID set, and the layers applied or already there. */
export const ImageUnpackReply = z.object({
  image: ImageRecord,
  applied: z.number().int(),
  skipped: z.number().int(),
});
export type ImageUnpackReply = z.infer<typeof ImageUnpackReply>;

/** Registry credentials sent with one request (as docker's X-Registry-Auth): never stored by the service. */
export const RegistryAuth = z.object({
  username: z.string().optional(),
  password: z.string().optional(),
  /** A refresh token (docker config.json `identitytoken`). */
  identityToken: z.string().optional(),
  /** A bearer token used as is. */
  registryToken: z.string().optional(),
});
export type RegistryAuth = z.infer<typeof RegistryAuth>;

/**
 * Full request of `pull` (PullRequest plus optional fields): `pullId` names the progress event
 * topic (`images.pull.progress.<pullId>`), `auth` carries credentials for the reference's registry.
 */
export const PullImageRequest = PullRequest.extend({
  pullId: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,64}$/)
    .optional(),
  auth: RegistryAuth.optional(),
});
export type PullImageRequest = z.infer<typeof PullImageRequest>;

/** Reply of `pull`: the stored record, and what unpacking did (or why it did not happen). */
export const PullReply = z.object({
  image: ImageRecord,
  /** Bytes fetched from the registry by this pull (0 when everything was already present). */
  fetchedBytes: z.number().int().nonnegative(),
  /**
   * What the pull did to the name: `created` it, `updated` it to other content, or left it
   * `unchanged`. Absent from an older image-service.
   */
  reference: z.enum(['created', 'updated', 'unchanged']).optional(),
  /** Unpack outcome: `done`, `skipped` (unpack: false) or `failed` with the reason in unpackError. */
  unpack: z.enum(['done', 'skipped', 'failed']),
  unpackError: z.string().optional(),
});
export type PullReply = z.infer<typeof PullReply>;

/** Status of one blob in a pull, as carried by the progress events. */
export const BlobStatus = {
  waiting: 'waiting',
  downloading: 'downloading',
  verifying: 'verifying',
  done: 'done',
  exists: 'exists',
  failed: 'failed',
} as const;
export type BlobStatus = (typeof BlobStatus)[keyof typeof BlobStatus];

/** Event payload on topic `images.pull.progress.<pullId>` (and `images.push.progress.<pushId>`). */
/**
 * Event topics of image records (payload `{ name }`), published once the record is written or
 * deleted: what a cache of images (the CRI gateway's) refreshes on.
 */
export const ImageTopic = {
  imageUpdate: 'images.update',
  imageDelete: 'images.delete',
} as const;
export type ImageTopic = (typeof ImageTopic)[keyof typeof ImageTopic];

/** The payload of an ImageTopic event. */
export interface ImageEvent {
  name: string;
  /** images.update: the written record's updatedAt (a cache holding that record or a newer one has nothing to read). */
  updatedAt?: string;
  /**
   * images.update: the written record's chainId ('' when it has none). An unpack writes the same
   * record again with its chainId and may keep its updatedAt (to the millisecond): both tell it.
   */
  chainId?: string;
}

export const PullProgress = z.object({
  pullId: z.string(),
  ref: z.string(),
  /** resolving | fetching | unpacking | done | failed */
  phase: z.enum(['resolving', 'fetching', 'unpacking', 'done', 'failed']),
  digest: z.string().optional(),
  blobs: z.array(
    z.object({
      digest: z.string(),
      mediaType: z.string(),
      size: z.number().int().nonnegative(),
      offset: z.number().int().nonnegative(),
      status: z.enum(['waiting', 'downloading', 'verifying', 'done', 'exists', 'failed']),
    }),
  ),
  error: z.string().optional(),
});
export type PullProgress = z.infer<typeof PullProgress>;

/**
 * Request of `list`: optional filters as `docker images --filter` (reference=glob), applied
 * before paging; pages are newest first.
 */
export const ListImagesRequest = PageRequest.extend({
  filters: z.array(z.string()).optional(),
});
export type ListImagesRequest = z.infer<typeof ListImagesRequest>;
/** Reply of `list`: one page; `nextCursor` while more images match. */
export const ListImagesReply = PageReply.extend({ images: z.array(ImageRecord) });
export type ListImagesReply = z.infer<typeof ListImagesReply>;

/** Request of `remove`: `force` removes even if a container uses the image. */
export const RemoveImageRequest = z.object({
  name: z.string().min(1),
  force: z.boolean().optional(),
  /** Run garbage collection right after (default true). */
  gc: z.boolean().optional(),
  /**
   * Run garbage collection after the reply instead (the reply then has no `gc`): noted in Redis
   * first, and run again at the image-service's next start if a crash interrupted it.
   */
  gcLater: z.boolean().optional(),
});
export type RemoveImageRequest = z.infer<typeof RemoveImageRequest>;

/** Reply of `gc` (and part of `remove`): what the collector deleted. */
export const GcReply = z.object({
  removedBlobs: z.number().int().nonnegative(),
  freedBytes: z.number().int().nonnegative(),
  removedIngests: z.number().int().nonnegative(),
  /** Outcome of the snapshot-service gc call: `done`, or why it was skipped. */
  snapshots: z.string(),
});
export type GcReply = z.infer<typeof GcReply>;

export const RemoveImageReply = z.object({ removed: z.array(z.string()), gc: GcReply.optional() });
export type RemoveImageReply = z.infer<typeof RemoveImageReply>;

/** Request of `tag`: a new name for an existing image. */
export const TagImageRequest = z.object({ source: z.string().min(1), target: z.string().min(1) });
export type TagImageRequest = z.infer<typeof TagImageRequest>;

/** Request of `push`: the local image `name`, pushed to `ref` (default: the same name). */
export const PushImageRequest = z.object({
  name: z.string().min(1),
  ref: z.string().optional(),
  pushId: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,64}$/)
    .optional(),
  auth: RegistryAuth.optional(),
});
export type PushImageRequest = z.infer<typeof PushImageRequest>;
export const PushImageReply = z.object({
  ref: z.string(),
  digest: Digest,
  /** Blobs uploaded, mounted from another repository, and already present. */
  uploaded: z.number().int().nonnegative(),
  mounted: z.number().int().nonnegative(),
  existing: z.number().int().nonnegative(),
});
export type PushImageReply = z.infer<typeof PushImageReply>;

/**
 * Request of `import`: an OCI image-layout tar or a docker-save tar at an absolute path on the
 * service's host (the image-service is host-local, so the CLI hands over a path instead of
 * streaming gigabytes through NATS).
 */
export const ImportImageRequest = z.object({
  path: z.string().startsWith('/'),
  /** Name to give an image that carries none (OCI layout without ref annotation). */
  name: z.string().optional(),
  /** Unpack the imported images into snapshots (default true; failures are logged, not fatal). */
  unpack: z.boolean().optional(),
});
export type ImportImageRequest = z.infer<typeof ImportImageRequest>;
export const ImportImageReply = z.object({ images: z.array(ImageRecord) });
export type ImportImageReply = z.infer<typeof ImportImageReply>;

/** Request of `export`: write an OCI image-layout tar of `names` to an absolute `path` on the host. */
export const ExportImageRequest = z.object({
  names: z.array(z.string().min(1)).min(1),
  path: z.string().startsWith('/'),
});
export type ExportImageRequest = z.infer<typeof ExportImageRequest>;
export const ExportImageReply = z.object({ path: z.string(), size: z.number().int().nonnegative() });
export type ExportImageReply = z.infer<typeof ExportImageReply>;

/** Reply of `usage`: what the node's content store occupies (CRI ImageFsInfo). */
export const ContentUsageReply = z.object({
  /** Mount point of the filesystem holding the blobs directory (its path). */
  path: z.string(),
  bytes: z.number().int().nonnegative(),
  blobs: z.number().int().nonnegative(),
  /** Blob files plus ingest entries. */
  inodes: z.number().int().nonnegative(),
});
export type ContentUsageReply = z.infer<typeof ContentUsageReply>;

/** Request of `login`: credentials to check against a registry (docker login); nothing is stored. */
export const LoginRequest = z.object({
  /** Registry host as a reference names it (`docker.io`, `host:5000`). */
  registry: z.string().min(1),
  auth: RegistryAuth,
});
export type LoginRequest = z.infer<typeof LoginRequest>;

/**
 * Reply of `chain-roots`: the top chainID of every image record on the node, in every namespace
 * (the record's chainId, and the chain its config's diff_ids name). The snapshot-service's GC keeps
 * these snapshots and everything below them.
 */
export const ChainRootsReply = z.object({
  chainIds: z.array(z.string()),
  /** Snapshot keys that live leases on the node hold (see lease.ts): GC roots as well. */
  leasedSnapshots: z.array(z.string()).default([]),
});
export type ChainRootsReply = z.infer<typeof ChainRootsReply>;

/** The image-service: one node's content store, registry client and image records. */
export const ImageApi = defineService({
  name: Service.image,
  scope: Scope.host,
  ops: {
    pull: op({
      input: PullImageRequest,
      output: PullReply,
      timeoutMs: 3_600_000,
      description: 'pull an image into the content store (and unpack it); progress as events',
      events: 'images.pull.progress.{pullId}',
    }),
    list: op({
      input: ListImagesRequest,
      output: ListImagesReply,
      timeoutMs: 10_000,
      description: 'one page of the images of the namespace, newest first',
    }),
    get: op({
      input: GetImageRequest,
      output: ImageRecord,
      timeoutMs: 10_000,
      description: 'one image by name, digest or id prefix',
    }),
    unpack: op({
      input: GetImageRequest,
      output: ImageUnpackReply,
      timeoutMs: 1_800_000,
      description: "unpack an image's layers into snapshots",
    }),
    remove: op({
      input: RemoveImageRequest,
      output: RemoveImageReply,
      timeoutMs: 300_000,
      description: 'remove image names (and collect garbage)',
    }),
    tag: op({
      input: TagImageRequest,
      output: ImageRecord,
      timeoutMs: 10_000,
      description: 'a new name for an existing image',
    }),
    push: op({
      input: PushImageRequest,
      output: PushImageReply,
      timeoutMs: 3_600_000,
      description: 'push an image to a registry; progress as events',
      events: 'images.push.progress.{pushId}',
    }),
    import: op({
      input: ImportImageRequest,
      output: ImportImageReply,
      timeoutMs: 3_600_000,
      description: 'import an OCI layout or docker-save tar from a path on the node',
    }),
    export: op({
      input: ExportImageRequest,
      output: ExportImageReply,
      timeoutMs: 3_600_000,
      description: 'write an OCI layout tar of images to a path on the node',
    }),
    gc: op({
      input: Empty,
      output: GcReply,
      timeoutMs: 300_000,
      description: 'remove blobs and ingests no image or lease holds',
    }),
    usage: op({
      input: Empty,
      output: ContentUsageReply,
      timeoutMs: 60_000,
      description: 'disk used by the content store',
    }),
    'chain-roots': op({
      input: Empty,
      output: ChainRootsReply,
      timeoutMs: 30_000,
      description: "top chainIDs of all images on the node in every namespace (snapshot GC's roots)",
    }),
    'lease-create': op({
      input: LeaseCreateRequest,
      output: Lease,
      timeoutMs: 10_000,
      description: 'a lease: content and snapshots added to it are GC roots until it is deleted or expires',
    }),
    'lease-add': op({
      input: LeaseResourcesRequest,
      output: Lease,
      timeoutMs: 10_000,
      description: 'content digests and snapshot keys a lease protects from now on',
    }),
    'lease-delete': op({
      input: LeaseRef,
      output: Empty,
      timeoutMs: 10_000,
      description: 'end a lease: what it held is collectable again',
    }),
    'lease-list': op({
      input: Empty,
      output: LeaseListReply,
      timeoutMs: 10_000,
      description: "the namespace's live leases on the node",
    }),
    login: op({
      input: LoginRequest,
      output: Empty,
      timeoutMs: 30_000,
      description: "check credentials against a registry's /v2/ as docker login does; nothing is stored",
    }),
  },
});

/** Event topic of a pull's progress. */
export function pullProgressTopic(pullId: string): string {
  return eventTopicOf(ImageApi.ops.pull, { pullId }) as string;
}
/** Event topic of a push's progress. */
export function pushProgressTopic(pushId: string): string {
  return eventTopicOf(ImageApi.ops.push, { pushId }) as string;
}
