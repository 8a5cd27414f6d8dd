export * from './node.js';
export * from './profile.js';
