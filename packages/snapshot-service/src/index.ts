export { nativeFs } from './fs/native.js';
export { createService, type SnapshotService } from './service.js';
export { Snapshotter, type SnapshotterOptions, type SnapshotUsage } from './snapshots/snapshotter.js';
export {
  type MeasuredUsage,
  UsageCache,
  type UsageCacheOptions,
  type UsagePass,
} from './snapshots/usage-cache.js';
export { applyLayer } from './unpack/apply.js';
export { Unpacker } from './unpack/unpacker.js';
