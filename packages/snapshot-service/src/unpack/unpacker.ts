import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  chainIds,
  SnapshotKind,
  UNPACK_LABEL,
  type UnpackReply,
  type UnpackRequest,
} from '@berth/api';
import type { ServiceContext } from '@berth/kit';
import { keys, type Lock, withLock } from '@berth/kit';
import { withSpan } from '@berth/kit/tracing';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import { applyLayer } from './apply.js';
import { unpackMetrics } from './metrics.js';

/** What applying one layer of an unpack needs. */
interface ApplyArgs {
  req: UnpackRequest;
  i: number;
  chainId: string;
  parent: string | undefined;
  lock: Lock;
  signal: AbortSignal | undefined;
}

/** Label on a committed layer snapshot: the DiffID it was verified against. */
export const DIFF_ID_LABEL = 'berth.io/diff-id';
/** Label on a committed layer snapshot: the layer blob digest it was applied from. */
export const LAYER_LABEL = 'berth.io/layer';
/**
 * Label on an extract snapshot: the token of the unpack lock its writer holds. Once the lock no
 * longer holds that token the writer is gone, and the snapshot is an orphan (see orphans.ts).
 */
export const UNPACK_OWNER_LABEL = 'berth.io/unpack-owner';
/** Default expiry of the per-chainID unpack lock, renewed while held. */
export const DEFAULT_UNPACK_LOCK_TTL_MS = 30_000;

/** Settings of the unpacker. */
export interface UnpackerOptions {
  snapshotter: Snapshotter;
  /** Committed blobs: <blobsDir>/<hex>. */
  blobsDir: string;
  maxLayerUncompressedBytes: number;
  /** How long to wait for another unpack of the same chainID. */
  lockWaitMs: number;
  /** Expiry of the per-chainID lock (renewed while held): a crashed unpack blocks others this long. Default 30 s. */
  lockTtlMs?: number;
  log: ServiceContext['log'];
}

/**
 * Applies an image's layers as committed snapshots named by chainID, the way containerd's
 * unpacker does: a layer whose chainID is committed is skipped; otherwise, under a Redis lock per
 * chainID (one unpack across concurrent pulls and replicas), it is written into a fresh active
 * snapshot "extract-<rand> <chainID>", its DiffID checked against the config, and committed.
 * Losing the lock stops the write at once and removes the extract snapshot; the commit changes
 * the records only while the lock holds (checked in the commit's own Lua script).
 */
export class Unpacker {
  constructor(private readonly o: UnpackerOptions) {}

  async unpack(req: UnpackRequest, signal?: AbortSignal): Promise<UnpackReply> {
    if (req.layers.length !== req.diffIds.length) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `unpack: ${req.layers.length} layers but ${req.diffIds.length} diff_ids in the image config`,
      );
    }
    const chain = chainIds(req.diffIds);
    const top = chain[chain.length - 1] as string;
    const sn = this.o.snapshotter;
    const topRec = await sn.store.get(top);
    if (topRec?.kind === SnapshotKind.committed) return { chainId: top, applied: 0, skipped: chain.length };
    let applied = 0;
    let skipped = 0;
    for (let i = 0; i < chain.length; i++) {
      const chainId = chain[i] as string;
      const existing = await sn.store.get(chainId);
      if (existing?.kind === SnapshotKind.committed) {
        skipped++;
        continue;
      }
      const did = await withLock(
        sn.redis,
        keys.unpackLock(sn.node, chainId),
        {
          ttlMs: this.o.lockTtlMs ?? DEFAULT_UNPACK_LOCK_TTL_MS,
          waitMs: this.o.lockWaitMs,
          what: `unpack of snapshot ${chainId}`,
        },
        async (lock) => {
          const again = await sn.store.get(chainId);
          if (again?.kind === SnapshotKind.committed) return false;
          if (again) {
            throw new BerthError(
              Code.FAILED_PRECONDITION,
              `snapshot "${chainId}" exists but is ${again.kind}, not committed`,
            );
          }
          await this.applyOne({
            req,
            i,
            chainId,
            parent: i > 0 ? chain[i - 1] : undefined,
            lock,
            signal,
          });
          return true;
        },
      );
      if (did) applied++;
      else skipped++;
    }
    return { chainId: top, applied, skipped };
  }

  /** Applies one layer in a span `layer apply`: its digest, chainID, snapshot key, bytes and files. */
  private applyOne(a: ApplyArgs): Promise<void> {
    const attrs = {
      'berth.layer.digest': a.req.layers[a.i]?.digest ?? '',
      'berth.layer.index': a.i,
      'berth.chain_id': a.chainId,
      ...(a.parent ? { 'berth.snapshot.parent': a.parent } : {}),
    };
    return withSpan('layer apply', attrs, (span) =>
      this.applyLayerOnce(a, (r) =>
        span.setAttributes({
          'berth.snapshot.key': r.key,
          'berth.layer.bytes': r.bytes,
          'berth.layer.files': r.entries,
          'berth.layer.compression': r.compression,
        }),
      ),
    );
  }

  private async applyLayerOnce(
    a: ApplyArgs,
    applied: (r: { key: string; bytes: number; entries: number; compression: string }) => void,
  ): Promise<void> {
    const sn = this.o.snapshotter;
    const layer = a.req.layers[a.i];
    const want = a.req.diffIds[a.i];
    if (!layer || !want) throw new BerthError(Code.INVALID_ARGUMENT, `unpack: layer ${a.i} is missing`);
    const key = `extract-${randomUUID()} ${a.chainId}`;
    const prep = { key, labels: { [UNPACK_LABEL]: a.chainId, [UNPACK_OWNER_LABEL]: a.lock.token } };
    const created = await sn.create(SnapshotKind.active, a.parent ? { ...prep, parent: a.parent } : prep);
    const started = Date.now();
    // The request's cancellation or the loss of the chainID lock: either stops the write at once.
    const lost = a.lock.lost;
    const signals = [a.signal, lost].filter((x): x is AbortSignal => x !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    try {
      const res = await applyLayer({
        blobPath: join(this.o.blobsDir, layer.digest.slice('sha256:'.length)),
        mediaType: layer.mediaType,
        root: created.fs,
        parents: created.parentFs,
        maxUncompressedBytes: this.o.maxLayerUncompressedBytes,
        what: `layer ${layer.digest}`,
        ...(signal ? { signal } : {}),
      });
      if (res.diffId !== want) {
        throw new BerthError(
          Code.DATA_LOSS,
          `layer ${layer.digest} unpacked to diffID ${res.diffId}, but the image config says ${want}: wrong diff id, snapshot discarded`,
        );
      }
      // Renewing extends the lock for the commit; the commit script checks it again and is the
      // point of truth (a holder can stall between the two).
      if (lost?.aborted || !(await a.lock.renew())) {
        throw new BerthError(
          Code.ABORTED,
          `lost the unpack lock of ${a.chainId} while applying layer ${layer.digest}; nothing was committed`,
        );
      }
      await sn.commit(
        { name: a.chainId, key, labels: { [DIFF_ID_LABEL]: want, [LAYER_LABEL]: layer.digest } },
        a.lock,
      );
      const ms = Date.now() - started;
      unpackMetrics().layer({
        bytes: res.uncompressedBytes,
        files: res.entries,
        seconds: ms / 1000,
        compression: res.compression,
      });
      this.o.log.info(
        {
          layer: layer.digest,
          chainId: a.chainId,
          bytes: res.uncompressedBytes,
          entries: res.entries,
          compression: res.compression,
          ms,
        },
        'layer unpacked',
      );
      applied({
        key,
        bytes: res.uncompressedBytes,
        entries: res.entries,
        compression: String(res.compression),
      });
    } catch (err) {
      // The extract snapshot is this holder's alone (a random key), so it goes now, lock or not.
      await sn
        .remove(key)
        .catch((e: unknown) =>
          this.o.log.warn({ err: (e as Error).message, key }, 'could not discard a failed unpack'),
        );
      if (lost?.aborted && !(err instanceof BerthError && err.code === Code.ABORTED)) {
        throw new BerthError(
          Code.ABORTED,
          `${(lost.reason as Error).message}; layer ${layer.digest} not committed`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }
}
