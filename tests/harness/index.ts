/**
 * Shared helpers for end-to-end tests that drive the built CLI:
 * - `isolatedEnv()` / `runBerth()` (berth.ts): a temp installation (state root, run root, config
 *   file, random node id) and running one `berth` command in it;
 * - `startCommand()` (command.ts): any command started with input, its output collected, bounded;
 * - `startStack()` (stack.ts): `berth up` in such an installation with free embedded ports (or
 *   external servers), returning a handle with `berth()`, `status()`, `state()`, `waitForStatus()`
 *   and `stop()`; plus `waitFor()`, `alive()` and `readStackState()`;
 * - `startImageService()` (image-service.ts): the image-service as its own process, answering;
 * - `startOtlpReceiver()` (otlp.ts): an OTLP/HTTP trace receiver collecting the spans services export;
 * - `freeLowPort()` (ports.ts): a free port for a test to publish, outside bind(0)'s range.
 * Servers for tests themselves (nats-server, redis-server, docker-registry) come from @berth/testing.
 */
export * from './berth.js';
export * from './command.js';
export * from './image-service.js';
export * from './otlp.js';
export * from './ports.js';
export * from './stack.js';
