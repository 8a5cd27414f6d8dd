import { ImageRecord, SnapshotKind, UNPACK_LABEL } from '@berth/api';
import { keys, withLock } from '@berth/kit';
import { chainIds } from '../unpack/unpacker.js';
import type { Snapshotter } from './snapshotter.js';
import type { SnapshotRecord } from './store.js';

/** What a collection did. */
export interface GcResult {
  removed: string[];
  kept: number;
}

/**
 * The top chainID of every image record on the node, in every namespace. Image records are
 * written by the image-service: keys.images(node, ns) is a sorted set of names and
 * keys.image(node, ns, name) a hash whose `record` field is the ImageRecord JSON. A record
 * without chainId (not unpacked, or unpacked before the record was updated) still roots the
 * chain its config's diff_ids name.
 */
export async function imageChainRoots(sn: Snapshotter): Promise<Set<string>> {
  const out = new Set<string>();
  const pattern = keys.images(sn.node, '*');
  const prefix = keys.images(sn.node, '\u0000').split('\u0000')[0] as string;
  const suffix = keys.images(sn.node, '\u0000').split('\u0000')[1] as string;
  let cursor = '0';
  do {
    const [next, found] = await sn.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
    cursor = next;
    for (const setKey of found) {
      if (!setKey.startsWith(prefix) || !setKey.endsWith(suffix)) continue;
      const ns = setKey.slice(prefix.length, setKey.length - suffix.length);
      const names = await sn.redis.zrange(setKey, 0, -1);
      for (const name of names) {
        const raw = await sn.redis.hget(keys.image(sn.node, ns, name), 'record');
        if (!raw) continue;
        const parsed = ImageRecord.safeParse(JSON.parse(raw));
        if (!parsed.success) continue;
        const rec = parsed.data;
        if (rec.chainId) out.add(rec.chainId);
        const ids = rec.config.rootfs.diff_ids;
        if (ids.length > 0) out.add(chainIds(ids)[ids.length - 1] as string);
      }
    }
  } while (cursor !== '0');
  return out;
}

/**
 * Mark and sweep over snapshots, under the node's GC lock. Roots: image chainIDs, every active or
 * view snapshot (container root filesystems, mounts) except unpack leftovers whose unpack lock is
 * no longer held, and anything younger than the grace period (the window between an unpack and
 * the image record naming its chain). Everything reachable through parents is kept; the rest is
 * removed children first (each removal re-checks for children atomically, so a snapshot prepared
 * on a parent meanwhile keeps it).
 */
export async function collectSnapshots(
  sn: Snapshotter,
  opts: { graceMs: number; dryRun?: boolean },
): Promise<GcResult> {
  return withLock(
    sn.redis,
    keys.gcLock(sn.node),
    { ttlMs: 60_000, waitMs: 120_000, what: `snapshot gc of node ${sn.node}` },
    async () => {
      const all = await sn.store.all();
      const byName = new Map(all.map((r) => [r.name, r]));
      const roots = await imageChainRoots(sn);
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
