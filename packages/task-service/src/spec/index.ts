export * from './defaults.js';
export * from './env.js';
export * from './files.js';
export * from './generate.js';
export * from './seccomp.js';
export * from './user.js';
