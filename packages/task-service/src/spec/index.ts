export * from './defaults.js';
export * from './env.js';
export * from './files.js';
export * from './generate.js';
export * from './node-facts.js';
