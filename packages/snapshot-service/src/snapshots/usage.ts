import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Disk usage of a directory tree as containerd's fs.DiskUsage counts it: each inode once
 * (hardlinks are not double counted), size in allocated 512-byte blocks.
 */
export async function diskUsage(root: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p, { bigint: false });
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += st.blocks * 512;
    }
    if (!st.isDirectory()) return;
    const dir = await opendir(p, { bufferSize: 256 });
    const kids: string[] = [];
    for await (const d of dir) kids.push(join(p, d.name));
    for (let i = 0; i < kids.length; i += 64) await Promise.all(kids.slice(i, i + 64).map(visit));
  };
  await visit(root);
  return { size, inodes: seen.size };
}
