import { BerthError, Code, SnapshotKind, UNPACK_LABEL } from '@berth/api';
import { keys, type ServiceContext } from '@berth/kit';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import { UNPACK_OWNER_LABEL } from './unpacker.js';

type Logger = ServiceContext['log'];

/** What one sweep did: extract snapshots removed, and those whose owner may still be alive. */
export interface OrphanSweep {
  removed: string[];
  /** Extracts whose lock still holds their owner's token: alive, or dead with the lock not yet expired. */
  held: number;
}

/**
 * Removes the extract snapshots of unpacks whose writer is gone: a writer holds the chainID's
 * unpack lock for as long as its extract snapshot exists (it removes the snapshot itself on any
 * failure), so an extract whose lock no longer holds the token it was labelled with (or, for one
 * without the label, whose lock nobody holds) was left by a process that died mid-unpack.
 */
export async function removeOrphanExtracts(sn: Snapshotter, log: Logger): Promise<OrphanSweep> {
  const out: OrphanSweep = { removed: [], held: 0 };
  for (const r of await sn.store.all()) {
    const chainId = r.labels[UNPACK_LABEL];
    if (r.kind !== SnapshotKind.active || chainId === undefined) continue;
    const holder = await sn.redis.get(keys.unpackLock(sn.node, chainId));
    const owner = r.labels[UNPACK_OWNER_LABEL];
    const gone = holder === null || (owner !== undefined && holder !== owner);
    if (!gone) {
      out.held++;
      continue;
    }
    try {
      await sn.remove(r.name);
      out.removed.push(r.name);
    } catch (err) {
      // Removed meanwhile (GC, another replica's sweep): nothing left to do.
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) continue;
      log.warn(
        { err: (err as Error).message, snapshot: r.name },
        'could not remove an orphan extract snapshot',
      );
    }
  }
  return out;
}

/**
 * The start-up sweep: removes orphan extracts now and, when some are still covered by a lock (the
 * dead writer's lock has not expired yet), once more after the lock's ttl. Returns a stop function.
 */
export function sweepOrphanExtractsAtStart(sn: Snapshotter, log: Logger, lockTtlMs: number): () => void {
  let timer: NodeJS.Timeout | undefined;
  const sweep = async (again: boolean) => {
    const r = await removeOrphanExtracts(sn, log);
    if (r.removed.length > 0) log.info({ removed: r.removed }, 'removed extract snapshots of dead unpacks');
    if (again && r.held > 0) {
      timer = setTimeout(() => void sweep(false).catch(warn), lockTtlMs + 1_000);
      timer.unref();
    }
  };
  const warn = (err: unknown) =>
    log.warn({ err: (err as Error).message }, 'sweep of orphan extract snapshots failed');
  void sweep(true).catch(warn);
  return () => clearTimeout(timer);
}
