/**
 * The one Redis key schema of berth. Every key any service writes is built here, and every family
 * has one owning service (keyOwners below) that alone writes and reads it. Bump SCHEMA_VERSION when
 * a layout changes incompatibly; keys of another version are never read.
 *
 * Layout (see docs/layout.md):
 *   berth:v1:node:<node>:...              host-local state (content, images, snapshots, shim)
 *   berth:v1:ns:<namespace>:...           cluster-wide state (containers, tasks)
 *   berth:v1:chain-claims:<node>          cluster-wide index of one node's chain claims
 */
export const SCHEMA_VERSION = 'v1';
const root = `berth:${SCHEMA_VERSION}`;

function nodeKey(node: string, ...parts: string[]): string {
  return [root, 'node', node, ...parts].join(':');
}
function nsKey(ns: string, ...parts: string[]): string {
  return [root, 'ns', ns, ...parts].join(':');
}

export const keys = {
  // image-service (per node; a node's images are the ones its content store holds)
  /** Hash: one image: `record` (the ImageRecord JSON of @berth/api) and `target` (its digest). */
  image: (node: string, ns: string, name: string) => nodeKey(node, 'ns', ns, 'image', name),
  /** Sorted set of image names in a namespace, scored by update time. */
  images: (node: string, ns: string) => nodeKey(node, 'ns', ns, 'images'),
  /** Hash: one blob's record (size, mediaType, committedAt, labels JSON incl. gc refs). */
  content: (node: string, digest: string) => nodeKey(node, 'content', digest),
  /** Set of every committed blob digest on the node. */
  contents: (node: string) => nodeKey(node, 'contents'),
  /** Lock: one writer per blob on a node. */
  blobLock: (node: string, digest: string) => nodeKey(node, 'lock', 'blob', digest),
  /** Lock: garbage collection of a node's content and snapshots (shared: image- and snapshot-service). */
  gcLock: (node: string) => nodeKey(node, 'lock', 'gc'),
  /**
   * Hash: namespaces whose garbage collection a removal left to run after its reply (namespace ->
   * a counter bumped by each such removal); an entry goes once a collection that began after its
   * last bump has finished, so one a crash interrupted runs when the image-service starts again.
   */
  gcPending: (node: string) => nodeKey(node, 'gc-pending'),
  /** Sorted set of lease ids scored by expiry (epoch ms): a lease's blobs are GC roots until then. */
  leases: (node: string) => nodeKey(node, 'leases'),
  /** Set of blob digests one lease protects (a pull or import whose image record is not written yet). */
  lease: (node: string, id: string) => nodeKey(node, 'lease', id),
  /** Hash: a client's lease (lease-create): namespace, labels JSON, createdAt, expiresAt. */
  leaseInfo: (node: string, id: string) => nodeKey(node, 'lease-info', id),
  /** Set of snapshot keys a client's lease protects from snapshot GC. */
  leaseSnapshots: (node: string, id: string) => nodeKey(node, 'lease-snapshots', id),

  // snapshot-service (per node)
  /** Hash: one snapshot (kind, parent, id, labels JSON, createdAt, updatedAt). */
  snapshot: (node: string, key: string) => nodeKey(node, 'snapshot', key),
  /** Set of all snapshot keys on the node. */
  snapshots: (node: string) => nodeKey(node, 'snapshots'),
  /** Set of the keys of a snapshot's children. */
  snapshotChildren: (node: string, key: string) => nodeKey(node, 'snapshot-children', key),
  /** Lock: one unpack per chainID on a node. */
  unpackLock: (node: string, chainId: string) => nodeKey(node, 'lock', 'unpack', chainId),
  /** Counter for snapshot directory ids. */
  snapshotSeq: (node: string) => nodeKey(node, 'snapshot-seq'),
  /** Sorted set of snapshot directory ids being created (score: start ms); cleanup spares them. */
  snapshotPending: (node: string) => nodeKey(node, 'snapshot-pending'),

  // task-service (cluster-wide, per namespace)
  /**
   * Hash: one container: `data` (the Container JSON of @berth/api), `name`, `createdAt`; while a
   * record created before its rootfs has no snapshot, `chainClaim` (JSON node and chainId: a root
   * of the node's snapshot GC, see the task-service's `claimed-chains`), indexed in chainClaims.
   */
  container: (ns: string, id: string) => nsKey(ns, 'container', id),
  /**
   * Set of the containers ("<ns>/<id>") whose record claims a chain on `node` (the record's
   * `chainClaim` field names the chain), written in the same step as each claim and its drop, so
   * `claimed-chains` reads a node's claims without reading every container. Written by any
   * task-service replica, whatever its node, so not under `node:` (host-local, see keyPattern).
   */
  chainClaims: (node: string) => [root, 'chain-claims', node].join(':'),
  /** Set of container ids in a namespace. */
  containers: (ns: string) => nsKey(ns, 'containers'),
  /** String: container name -> id (names are unique per namespace). */
  containerName: (ns: string, name: string) => nsKey(ns, 'container-name', name),
  /** Hash: a container's task state (status, pid, exitCode, exitedAt, node). */
  task: (ns: string, id: string) => nsKey(ns, 'task', id),
  /**
   * Hash: containers whose creation began and has not finished or been undone (id -> JSON of its
   * name, node and network), so a reconcile can undo what a replica that died mid-create left.
   */
  containersCreating: (ns: string) => nsKey(ns, 'containers-creating'),
  /**
   * Hash: containers removed in the background whose node resources (task, files, network,
   * snapshot) are still being freed (id -> the Container JSON), so a reconcile finishes what a
   * replica that died mid-way left.
   */
  containersCollecting: (ns: string) => nsKey(ns, 'containers-collecting'),
  /** Lock: serializes changes to one container and its task across task-service replicas. */
  containerLock: (ns: string, id: string) => nsKey(ns, 'lock', 'container', id),

  // shim (per node)
  /** Hash: a task the node's shim agent supervises (bundle, monitor pid, exit file). */
  shimTask: (node: string, ns: string, id: string) => nodeKey(node, 'shim', ns, id),
  /** Set of "<ns>/<id>" the node's shim supervises. */
  shimTasks: (node: string) => nodeKey(node, 'shim-tasks'),
  /** Hash: an exec process of a task the node's shim supervises (same fields as shimTask). */
  shimExec: (node: string, ns: string, id: string, execId: string) =>
    nodeKey(node, 'shim-exec', ns, id, execId),
  /** Set of the exec ids of one task. */
  shimExecs: (node: string, ns: string, id: string) => nodeKey(node, 'shim-execs', ns, id),

  /** Fencing-token counter shared by all locks. */
  fence: () => `${root}:fence`,
} as const;

/** A key family: the name of one builder of `keys`. */
export type KeyFamily = keyof typeof keys;

/**
 * The Redis glob matching every key of one family, on one node: what a Redis ACL user that owns
 * the family is granted (`~pattern`). Variable parts become `*`; the node part of host-local
 * families becomes `node` (itself `*` for every node). Node ids hold no glob characters.
 */
export function keyPattern(family: KeyFamily, node: string): string {
  const build = keys[family] as (...parts: string[]) => string;
  const any = build(...Array.from({ length: build.length }, () => '*'));
  const anyNode = `${nodeKey('*')}:`;
  return any.startsWith(anyNode) ? `${nodeKey(node)}:${any.slice(anyNode.length)}` : any;
}

/** A package of packages/ that may build a key family (its directory name). */
export type KeyOwner = 'image-service' | 'snapshot-service' | 'task-service' | 'shim' | 'kit';

/**
 * The owner of every key family: the one package that writes AND reads it; any other service asks
 * the owner over NATS (its ImageApi, SnapshotApi, TaskApi or ShimApi) instead of parsing its records.
 * Two families are shared on purpose: `gcLock` serializes the image-service's content GC and the
 * snapshot-service's snapshot GC of one node, and `fence` is the kit's lock counter. Checked by
 * keys-owners.test.ts (no package builds a key it does not own) and documented in docs/layout.md.
 */
export const keyOwners: { readonly [F in keyof typeof keys]: readonly KeyOwner[] } = {
  image: ['image-service'],
  images: ['image-service'],
  content: ['image-service'],
  contents: ['image-service'],
  blobLock: ['image-service'],
  gcLock: ['image-service', 'snapshot-service'],
  gcPending: ['image-service'],
  leases: ['image-service'],
  lease: ['image-service'],
  leaseInfo: ['image-service'],
  leaseSnapshots: ['image-service'],
  snapshot: ['snapshot-service'],
  snapshots: ['snapshot-service'],
  snapshotChildren: ['snapshot-service'],
  unpackLock: ['snapshot-service'],
  snapshotSeq: ['snapshot-service'],
  snapshotPending: ['snapshot-service'],
  container: ['task-service'],
  containers: ['task-service'],
  containerName: ['task-service'],
  containersCreating: ['task-service'],
  containersCollecting: ['task-service'],
  task: ['task-service'],
  containerLock: ['task-service'],
  chainClaims: ['task-service'],
  shimTask: ['shim'],
  shimTasks: ['shim'],
  shimExec: ['shim'],
  shimExecs: ['shim'],
  fence: ['kit'],
};
