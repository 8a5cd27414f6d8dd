import { readFile, realpath } from 'node:fs/promises';
import { BerthError, Code } from '@berth/api';

/** One line of /proc/self/mountinfo: where a mount is and how it propagates. */
interface MountInfo {
  mountPoint: string;
  /** Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`. */
  tags: string[];
}

/** Parses /proc/<pid>/mountinfo (proc(5)); mount points have \ooo escapes for spaces and such. */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f.length < 7 || sep < 6) continue;
    const mountPoint = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) =>
      String.fromCharCode(Number.parseInt(o, 8)),
    );
    out.push({ mountPoint, tags: f.slice(6, sep) });
  }
  return out;
}

/** The mount holding `path`: the one whose mount point is the longest prefix (the last one wins). */
function mountOf(mounts: MountInfo[], path: string): MountInfo | undefined {
  let best: MountInfo | undefined;
  for (const m of mounts) {
    const inside = m.mountPoint === '/' || path === m.mountPoint || path.startsWith(`${m.mountPoint}/`);
    if (inside && (!best || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/**
 * Checks, on this node, that every bind mount asking for `rshared` sits on a shared mount and every
 * `rslave` one on a shared or slave mount, as containerd does: otherwise the container would start
 * and silently see nothing propagate. FAILED_PRECONDITION names the source and its mount point.
 */
export async function checkBindPropagation(spec: Record<string, unknown>, mountinfo?: string): Promise<void> {
  const mounts = (spec.mounts as { source?: string; options?: string[] }[] | undefined) ?? [];
  const need = mounts.filter((m) => m.options?.includes('rshared') || m.options?.includes('rslave'));
  if (need.length === 0) return;
  const table = parseMountinfo(mountinfo ?? (await readFile('/proc/self/mountinfo', 'utf8')));
  for (const m of need) {
    const source = m.source ?? '';
    const real = await realpath(source).catch(() => {
      throw new BerthError(Code.NOT_FOUND, `bind mount source "${source}" does not exist on this node`);
    });
    const host = mountOf(table, real);
    const shared = host?.tags.some((t) => t.startsWith('shared:')) ?? false;
    const slave = host?.tags.some((t) => t.startsWith('master:')) ?? false;
    const mode = m.options?.includes('rshared') ? 'rshared' : 'rslave';
    if (mode === 'rshared' ? !shared : !(shared || slave)) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `bind mount source "${source}" is on mount "${host?.mountPoint ?? '?'}", which is not ${mode === 'rshared' ? 'shared' : 'shared or slave'}: ${mode} propagation needs it (mount --make-${mode === 'rshared' ? 'rshared' : 'rslave'} ${host?.mountPoint ?? source})`,
      );
    }
  }
}
