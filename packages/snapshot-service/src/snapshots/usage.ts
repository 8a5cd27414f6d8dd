import { nativeFs } from '../fs/native.js';

/** Bytes in allocated blocks and distinct inodes of a directory tree. */
export interface Usage {
  size: number;
  inodes: number;
}

/**
 * Disk usage of a directory tree as containerd's fs.DiskUsage counts it: each inode once
 * (hardlinks are not double counted), size in allocated 512-byte blocks. A native walk on libuv's
 * thread pool: ~50 ms for 20,000 files, during which the event loop keeps serving. A missing
 * `root` rejects with ENOENT (diskUsage counts it as empty).
 */
export async function walkUsage(root: string): Promise<Usage> {
  const [size, inodes] = await nativeFs().diskUsageAsync(root);
  return { size, inodes };
}

/** walkUsage, counting a missing `root` as empty (what the synchronous walk always did). */
export async function diskUsage(root: string): Promise<Usage> {
  try {
    return await walkUsage(root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { size: 0, inodes: 0 };
    throw err;
  }
}
