import { Service } from '@berth/api';
import { type Config, serviceSetting } from '@berth/kit';
import { z } from 'zod';
import { USAGE_REFRESH_MS, USAGE_WALKS } from './snapshots/usage-cache.js';

/** Settings of the snapshot-service (config `services.snapshot-service.*`). */
export interface SnapshotSettings {
  /** Bound on the uncompressed bytes of one layer: a decompression bomb stops there. */
  maxLayerUncompressedBytes: number;
  /** How long an unpack waits for another unpack of the same chainID. */
  unpackLockWaitMs: number;
  /**
   * Expiry of the per-chainID unpack lock (renewed while held): how long the lock of an unpack
   * whose process died blocks a retry, and how soon its extract snapshot counts as an orphan.
   */
  unpackLockTtlMs: number;
  /**
   * GC keeps committed snapshots younger than this. Default 0: the image-service writes the image
   * record (whose diff_ids root the chain) before it asks for an unpack, so no window needs a lease.
   */
  gcGraceMs: number;
  /**
   * How often the usage of an active snapshot someone asks for (kubelet's ListContainerStats,
   * every ~10 s) is walked again; `usage` answers from the last walk in between. Default 10 s,
   * containerd's CRI `stats_collect_period`. A snapshot not asked for in 3 periods is not walked.
   */
  usageRefreshMs: number;
  /** Usage walks running at once across snapshots (they share the disk with the workloads). */
  usageWalkConcurrency: number;
}

/** Reads the settings with their defaults. */
export function snapshotSettings(config: Config): SnapshotSettings {
  const S = Service.snapshot;
  const pos = z.number().int().positive();
  return {
    maxLayerUncompressedBytes: serviceSetting(config, S, 'maxLayerUncompressedBytes', pos, 64 * 1024 ** 3),
    unpackLockWaitMs: serviceSetting(config, S, 'unpackLockWaitMs', pos, 30 * 60_000),
    unpackLockTtlMs: serviceSetting(config, S, 'unpackLockTtlMs', z.number().int().min(1000), 30_000),
    gcGraceMs: serviceSetting(config, S, 'gcGraceMs', z.number().int().nonnegative(), 0),
    usageRefreshMs: serviceSetting(config, S, 'usageRefreshMs', pos, USAGE_REFRESH_MS),
    usageWalkConcurrency: serviceSetting(config, S, 'usageWalkConcurrency', pos, USAGE_WALKS),
  };
}
