// Who talks to whom on the bus: for each berth process (a principal), the service it answers, the
// services it calls, and the event topics it publishes and listens to. Subjects and op names come
// from the service definitions, so a new operation needs no edit here: a caller granted a whole
// service may call it at once; only callers limited to named operations must name a new one.
// The kit turns this into per-user NATS permissions and Redis ACLs (kit/permissions.ts).
import type { OpName, ServiceDef } from './contract.js';
import { CriApi } from './cri.js';
import { ImageApi, ImageTopic } from './image.js';
import { ShimApi } from './shim.js';
import { SnapshotApi } from './snapshot.js';
import { Service } from './subjects.js';
import { TaskApi, TaskTopic } from './task.js';

/** Every process that logs in to NATS or Redis with its own user: the services and the CLI. */
export const Principal = { ...Service, cli: 'cli' } as const;
export type Principal = (typeof Principal)[keyof typeof Principal];

/** Permission to call a service: every operation, or only the named ones. */
export interface CallGrant<S extends ServiceDef = ServiceDef> {
  readonly service: S;
  /** Only these operations; absent means every operation the definition has (new ones too). */
  readonly ops?: readonly OpName<S>[];
}

/** A grant, typed by the service's own op names (a renamed op fails type-checking here). */
function grant<S extends ServiceDef>(service: S, ops?: readonly OpName<S>[]): CallGrant {
  return ops ? { service, ops } : { service };
}

/** What one principal does on the bus. */
export interface BusRole {
  /** The service it answers (its operations and `$SRV` discovery), if any. */
  readonly serves?: ServiceDef;
  /** The services it calls. */
  readonly calls: readonly CallGrant[];
  /**
   * True when it calls host-local services on every node (a cluster-wide caller); otherwise only
   * those of its own node.
   */
  readonly anyNode: boolean;
  /** Event topics (NATS wildcards allowed) it publishes besides its operations' `events`. */
  readonly emits: readonly string[];
  /** Event topics (NATS wildcards allowed) it subscribes to. */
  readonly listens: readonly string[];
  /** True when it asks `$SRV.PING|INFO|STATS` (service discovery, `berth status`). */
  readonly discovers: boolean;
}

/** tasks.exit comes from the shim's exit path; the task-service publishes the rest of TaskTopic. */
const taskServiceTopics = Object.values(TaskTopic).filter((t) => t !== TaskTopic.taskExit);

/**
 * The bus roles of berth's processes. The gateway faces the kubelet, so it reaches the shim only
 * for pod networking and log reopening; containers' life cycle goes through the task-service.
 * The image-service asks the task-service only which containers use an image (rmi), and the
 * snapshot-service asks the image-service only for its chain roots and the task-service only for
 * the chains containers claim before their rootfs is prepared (snapshot GC's roots, both).
 */
export const busRoles: { readonly [P in Principal]: BusRole } = {
  [Principal.image]: {
    serves: ImageApi,
    calls: [grant(SnapshotApi), grant(TaskApi, ['list-containers'])],
    anyNode: false,
    emits: Object.values(ImageTopic),
    listens: [],
    discovers: false,
  },
  [Principal.snapshot]: {
    serves: SnapshotApi,
    calls: [grant(ImageApi, ['chain-roots']), grant(TaskApi, ['claimed-chains'])],
    anyNode: false,
    emits: ['snapshots.*'],
    listens: [],
    discovers: false,
  },
  [Principal.task]: {
    serves: TaskApi,
    calls: [grant(ShimApi), grant(SnapshotApi), grant(ImageApi)],
    anyNode: true,
    emits: taskServiceTopics,
    listens: [TaskTopic.taskExit],
    discovers: false,
  },
  [Principal.shim]: {
    serves: ShimApi,
    calls: [],
    anyNode: false,
    emits: [TaskTopic.taskExit],
    listens: [],
    discovers: false,
  },
  [Principal.cri]: {
    serves: CriApi,
    calls: [
      grant(TaskApi),
      grant(ImageApi),
      grant(SnapshotApi),
      grant(ShimApi, [
        'info',
        'reopen-log',
        'network-netns',
        'network-setup',
        'network-teardown',
        'network-list',
        'network-pod-cidr',
      ]),
    ],
    anyNode: false,
    emits: [],
    listens: ['>'],
    discovers: false,
  },
  [Principal.cli]: {
    calls: [grant(ImageApi), grant(SnapshotApi), grant(TaskApi), grant(ShimApi), grant(CriApi)],
    anyNode: true,
    emits: [],
    listens: ['>'],
    discovers: true,
  },
};
