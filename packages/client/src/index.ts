/**
 * berth as a library: a typed client of berth's services over NATS, derived from the same
 * contract definitions (`@berth/api`) the services are built from.
 *
 * ```ts
 * import { connect } from '@berth/client';
 * const berth = await connect({ natsUrl: 'nats://127.0.0.1:4222', node: 'node-1' });
 * await berth.images.pull('docker.io/library/busybox:latest');
 * const { container } = await berth.containers.run({
 *   image: 'docker.io/library/busybox:latest',
 *   cmd: ['true'],
 * });
 * console.log(await berth.tasks.wait(container.id));
 * await berth.close();
 * ```
 * @packageDocumentation
 */
export {
  BerthError,
  Code,
  type Container,
  type ContainerInfo,
  type CreateContainerRequest,
  type ExitStatus,
  type ImageRecord,
  type InfoReply,
  type Lease,
  type Mount,
  type ProcessState,
  type PullProgress,
  type PullReply,
  type PushImageReply,
  type RegistryAuth,
  type Resources,
  type ShimStats,
  type SnapshotInfo,
  type Task,
  type TaskExit,
  TaskTopic,
} from '@berth/api';
export { Berth, type ConnectOptions, type Credentials, connect } from './berth.js';
export { type ContainerSpec, Containers } from './containers.js';
export { type EventEnvelope, type EventFilter, type EventStream, Events } from './events.js';
export type { ServiceHealth } from './health.js';
export { Images, type PullOptions, type PushOptions } from './images.js';
export { type LeaseOptions, Leases } from './leases.js';
export { type LogLine, parseCriLine } from './logs.js';
export type { RequestOptions } from './scope.js';
export { Snapshots } from './snapshots.js';
export { Attachment, type OutputChunk } from './streams.js';
export { type AttachOptions, type ExecOptions, type ExecResult, type LogsOptions, Tasks } from './tasks.js';
export { DEFAULT_SILENCE_MS, type Transfer } from './transfer.js';
export type { WaitOptions } from './wait.js';
