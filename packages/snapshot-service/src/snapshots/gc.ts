import { BerthError, Code, SnapshotKind, toBerthError, UNPACK_LABEL } from '@berth/api';
import { keys, withLock } from '@berth/kit';
import type { Snapshotter } from './snapshotter.js';
import type { SnapshotRecord } from './store.js';

/** What a collection did. */
export interface GcResult {
  removed: string[];
  kept: number;
}

/**
 * Where GC learns the images' top chainIDs on the node (all namespaces): the image-service's
 * `chain-roots`, injected so the domain has no NATS in it. Image records are the image-service's.
 */
export type ImageChainRoots = () => Promise<string[]>;

/**
 * Where GC learns the chains containers on the node were created on before their rootfs snapshot
 * was prepared (a CRI create answers first): the task-service's `claimed-chains`, injected as
 * ImageChainRoots is. Container records are the task-service's.
 */
export type ContainerChainRoots = () => Promise<string[]>;

/**
 * Asks one owner for its roots; any failure stops the collection before anything is removed,
 * since without them what they hold would look unreferenced.
 */
async function rootsOf(sn: Snapshotter, owner: string, what: string, ask: () => Promise<string[]>) {
  try {
    return await ask();
  } catch (err) {
    const e = toBerthError(err);
    throw new BerthError(
      Code.UNAVAILABLE,
      `snapshot gc of node ${sn.node}: the ${owner} could not list ${what}, so nothing was removed: ${e.message}`,
      { cause: err },
    );
  }
}

/**
 * Mark and sweep over snapshots, under the node's GC lock. Roots: image chainIDs and the chains
 * containers claim before their rootfs is prepared (both asked first), every active or view
 * snapshot (container root filesystems, mounts) except unpack leftovers whose unpack lock is no
 * longer held, and anything younger than the grace period (the window between an unpack and the
 * image record naming its chain). Everything reachable through parents is kept; the rest is
 * removed children first (each removal re-checks for children atomically, so a snapshot prepared
 * on a parent meanwhile keeps it).
 */
export async function collectSnapshots(
  sn: Snapshotter,
  opts: {
    graceMs: number;
    dryRun?: boolean;
    imageRoots: ImageChainRoots;
    containerRoots: ContainerChainRoots;
  },
): Promise<GcResult> {
  return withLock(
    sn.redis,
    keys.gcLock(sn.node),
    { ttlMs: 60_000, waitMs: 120_000, what: `snapshot gc of node ${sn.node}` },
    async () => {
      const all = await sn.store.all();
      const byName = new Map(all.map((r) => [r.name, r]));
      const [images, containers] = await Promise.all([
        rootsOf(sn, 'image-service', "the images' chain roots", opts.imageRoots),
        rootsOf(
          sn,
          'task-service',
          'the chains of containers whose rootfs is not prepared',
          opts.containerRoots,
        ),
      ]);
      const roots = new Set([...images, ...containers]);
      const now = Date.now();
      const stale = new Set<string>();
      for (const r of all) {
        const unpacking = r.labels[UNPACK_LABEL];
        if (r.kind !== SnapshotKind.committed && unpacking !== undefined) {
          const held = await sn.redis.exists(keys.unpackLock(sn.node, unpacking));
          if (!held && now - Date.parse(r.createdAt) >= opts.graceMs) {
            stale.add(r.name);
            continue;
          }
        }
        if (r.kind !== SnapshotKind.committed) roots.add(r.name);
        else if (now - Date.parse(r.updatedAt) < opts.graceMs) roots.add(r.name);
      }
      const marked = new Set<string>();
      for (const root of roots) {
        let cur: SnapshotRecord | undefined = byName.get(root);
        while (cur && !marked.has(cur.name)) {
          marked.add(cur.name);
          cur = cur.parent ? byName.get(cur.parent) : undefined;
        }
      }
      const depth = (r: SnapshotRecord): number => {
        let d = 0;
        for (let p = r.parent; p; p = byName.get(p)?.parent) d++;
        return d;
      };
      const doomed = all
        .filter((r) => !marked.has(r.name) || stale.has(r.name))
        .sort((a, b) => depth(b) - depth(a));
      const removed: string[] = [];
      for (const r of doomed) {
        if (opts.dryRun) {
          removed.push(r.name);
          continue;
        }
        try {
          await sn.remove(r.name);
          removed.push(r.name);
        } catch {
          // A child appeared (or it is already gone): it stays for the next collection.
        }
      }
      return { removed, kept: all.length - removed.length };
    },
  );
}
