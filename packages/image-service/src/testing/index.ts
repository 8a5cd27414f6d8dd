// Test helpers other packages (e2e tests, benchmarks) use: fixture images, a registry proxy, and
// the built service as a process.

export { writeTestHelper } from './credential-helper.js';
export * from './fixtures.js';
export * from './process.js';
export * from './proxy.js';
