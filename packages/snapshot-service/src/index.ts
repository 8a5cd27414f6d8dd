export { type SnapshotClient, type SnapshotOps, snapshotClient, snapshotTimeouts } from './client.js';
export { nativeFs } from './fs/native.js';
export { createEndpoints } from './service.js';
export { Snapshotter } from './snapshots/snapshotter.js';
export { applyLayer } from './unpack/apply.js';
export { chainIds, Unpacker } from './unpack/unpacker.js';
