export * from './cni.js';
export * from './relay.js';
export * from './servers.js';
