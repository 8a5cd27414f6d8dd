export * from './cluster.js';
export * from './cni.js';
export * from './json-keys.js';
export * from './pki.js';
export * from './relay.js';
export * from './resp.js';
export * from './sentinel.js';
export * from './servers.js';
