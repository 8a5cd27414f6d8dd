export * from './convert.js';
export * from './default-profile.js';
export * from './resolve.js';
