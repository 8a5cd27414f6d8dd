export * from './errors.js';
export * from './health.js';
export * from './subjects.js';
export * from './version.js';
