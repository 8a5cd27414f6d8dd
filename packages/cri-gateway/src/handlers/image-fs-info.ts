import { imageFsUsage } from '../images/image-ops.js';
import type { HandlerDeps } from './types.js';

/** CRI FilesystemUsage, as on the wire (64-bit numbers as decimal strings). */
export interface FilesystemUsage {
  timestamp: string;
  fs_id: { mountpoint: string };
  used_bytes: { value: string };
  inodes_used: { value: string };
}

/**
 * ImageService/ImageFsInfo: one image filesystem (the snapshots directory) with what blobs and
 * unpacked layers use. Container filesystems are left empty: the kubelet then assumes the
 * writable layers share the image filesystem, which is true for berth's snapshot directory.
 */
export async function imageFsInfo(
  _request: unknown,
  deps: HandlerDeps,
): Promise<{ image_filesystems: FilesystemUsage[]; container_filesystems: FilesystemUsage[] }> {
  const u = await imageFsUsage(deps);
  return {
    image_filesystems: [
      {
        timestamp: u.timestampNs.toString(),
        fs_id: { mountpoint: u.mountpoint },
        used_bytes: { value: String(u.usedBytes) },
        inodes_used: { value: String(u.inodesUsed) },
      },
    ],
    container_filesystems: [],
  };
}
