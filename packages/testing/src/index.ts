export * from './relay.js';
export * from './servers.js';
