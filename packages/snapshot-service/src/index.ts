export { nativeFs } from './fs/native.js';
export { createHandlers } from './service.js';
export { Snapshotter } from './snapshots/snapshotter.js';
export { applyLayer } from './unpack/apply.js';
export { Unpacker } from './unpack/unpacker.js';
