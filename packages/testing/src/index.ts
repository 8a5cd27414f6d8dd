export * from './cluster.js';
export * from './cni.js';
export * from './pki.js';
export * from './relay.js';
export * from './resp.js';
export * from './sentinel.js';
export * from './servers.js';
