import type {
  ContentUsageReply,
  ImageRecord,
  PullImageRequest,
  PullReply,
  RemoveImageReply,
  RemoveImageRequest,
  SnapshotInfo,
  SnapshotUsageReply,
} from '@berth/api';

/** The namespace the CRI keeps its images (and later its containers) in, as containerd does. */
export const CRI_NAMESPACE = 'k8s.io';

/**
 * What the CRI ImageService needs from this node's image-service, already bound to the CRI
 * namespace. The gateway passes one that goes over NATS; the domain never sees NATS.
 */
export interface ImagePort {
  pull(req: PullImageRequest): Promise<PullReply>;
  /** Every image, newest first; the array may be shared (a view's kept list): never changed. */
  list(): Promise<readonly ImageRecord[]>;
  /** One record by name or id; fails NOT_FOUND when absent. */
  get(name: string): Promise<ImageRecord>;
  remove(req: RemoveImageRequest): Promise<RemoveImageReply>;
  usage(): Promise<ContentUsageReply>;
  /** get() answered from memory without waiting, when the port can (undefined: call get()). */
  getNow?(name: string): ImageRecord | undefined;
  /** list() answered from memory without waiting, when the port can (undefined: call list()). */
  listNow?(): readonly ImageRecord[] | undefined;
}

/** What ImageFsInfo needs from this node's snapshot-service. */
export interface SnapshotPort {
  list(filters: string[]): Promise<SnapshotInfo[]>;
  usage(key: string): Promise<SnapshotUsageReply>;
}
