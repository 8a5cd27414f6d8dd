export * from './cli-telemetry.js';
export * from './resource.js';
export * from './rpc.js';
export * from './span-record.js';
export * from './span-store.js';
export * from './spans.js';
export * from './store-dir.js';
export * from './traceparent.js';
