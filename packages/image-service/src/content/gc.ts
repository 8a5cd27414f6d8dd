import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@berth/kit';
import { keys, type Lock, type Redis, tryLock, withLock } from '@berth/kit';
import type { ImageStore } from '../images/store.js';
import { leasedDigests } from './lease.js';
import type { ContentStore } from './store.js';

/** What one collection removed. */
export interface GcResult {
  removedBlobs: number;
  freedBytes: number;
  removedIngests: number;
}

/** Ingest directories untouched this long, whose blob lock nobody holds, are abandoned downloads. */
const STALE_INGEST_MS = 60 * 60 * 1000;

/**
 * Mark and sweep over the node's content, under the node's GC lock. Order matters against
 * concurrent pulls: the candidates (blob files and records) are listed first, then leases, then
 * image records, so a blob committed after the listing is never a candidate and one committed
 * before it is already leased (pulls lease a digest before writing it). Blobs whose per-blob lock
 * is held (being written) are skipped.
 */
export async function collectGarbage(o: {
  redis: Redis;
  node: string;
  content: ContentStore;
  images: ImageStore;
  blobsDir: string;
  ingestDir: string;
  log?: Logger;
}): Promise<GcResult> {
  const { redis, node } = o;
  return withLock(
    redis,
    keys.gcLock(node),
    { ttlMs: 60_000, waitMs: 120_000, what: `gc of node ${node}` },
    async () => {
      const candidates = new Set(await redis.smembers(keys.contents(node)));
      for (const f of await readdir(o.blobsDir).catch(() => [] as string[])) {
        if (/^[a-f0-9]{64}$/.test(f)) candidates.add(`sha256:${f}`);
      }
      const roots = await leasedDigests(redis, node);
      for (const t of await o.images.allTargets()) roots.add(t);

      const marked = await mark(redis, node, roots);

      // Take each doomed blob's lock (skipping ones being written), then re-read the leases: a pull
      // that leased a blob after the first read either shows up now or waits for our lock and finds
      // the blob gone, so it fetches it again instead of trusting a file we delete.
      const held: Lock[] = [];
      const result: GcResult = { removedBlobs: 0, freedBytes: 0, removedIngests: 0 };
      try {
        for (const d of candidates) {
          if (marked.has(d)) continue;
          const l = await tryLock(redis, keys.blobLock(node, d), 60_000);
          if (l) held.push(l);
        }
        if (held.length > 0) {
          const lateRoots = await leasedDigests(redis, node);
          for (const t of await o.images.allTargets()) lateRoots.add(t);
          const late = await mark(redis, node, lateRoots);
          for (const l of held) {
            const d = l.key.slice(keys.blobLock(node, '').length);
            if (late.has(d)) continue;
            const size = (await o.content.size(d)) ?? 0;
            // A lock that expired meanwhile (it is not renewed) deletes nothing: a pull may own it.
            if (!(await o.content.delete(d, l))) continue;
            result.removedBlobs++;
            result.freedBytes += size;
          }
        }
      } finally {
        for (const l of held) await l.release().catch(() => undefined);
      }

      for (const name of await readdir(o.ingestDir).catch(() => [] as string[])) {
        const p = join(o.ingestDir, name);
        const st = await stat(p).catch(() => undefined);
        if (!st) continue;
        const locked =
          /^[a-f0-9]{64}$/.test(name) && (await redis.exists(keys.blobLock(node, `sha256:${name}`)));
        if (locked) continue;
        // A temp file or an unlocked ingest is removed once old enough that no writer can own it.
        if (Date.now() - st.mtimeMs < STALE_INGEST_MS) continue;
        await rm(p, { recursive: true, force: true });
        result.removedIngests++;
      }
      o.log?.info(result, 'gc done');
      return result;
    },
  );
}

/** Everything reachable from `roots` through gc.ref.content.* labels. */
async function mark(redis: Redis, node: string, roots: Iterable<string>): Promise<Set<string>> {
  const marked = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const d = queue.pop() as string;
    if (marked.has(d)) continue;
    marked.add(d);
    const labels = await redis.hget(keys.content(node, d), 'labels');
    if (!labels) continue;
    for (const [k, v] of Object.entries(JSON.parse(labels) as Record<string, string>)) {
      if (k.startsWith('gc.ref.content') && !marked.has(v)) queue.push(v);
    }
  }
  return marked;
}
