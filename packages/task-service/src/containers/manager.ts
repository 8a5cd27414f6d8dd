import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  CONTAINER_ID_PATTERN,
  type Container,
  type ContainerInfo,
  type CreateContainerRequest,
  errors,
  type ImageRecord,
  type ListContainersRequest,
  type Mount,
  NAMESPACE_PATTERN,
  NODE_ID_PATTERN,
  podAddresses,
  RUNTIME_NAME,
  SHIM_FILE_SOURCE,
  ShimFileName,
  TaskTopic,
  type UpdateContainerRequest,
} from '@berth/api';
import { keys, type Lock, type Page, type Redis, withLock, withLockIfFree } from '@berth/kit';
import type { Deps } from '../deps.js';
import { generateSpec, linuxResources } from '../spec/index.js';
import type { ContainerStore, CreateIntent } from '../store/store.js';
import { collect, collectAll, freeOnNode, releaseNetwork } from './collect.js';
import { checkRecordSize, replyable } from './limits.js';
import { listPage } from './listing.js';

/**
 * Where the manager runs: its node, the default node of a container. It writes no files: a
 * replica may serve a container on another machine, whose shim writes them (see SHIM_FILE_SOURCE).
 */
export interface ManagerEnv {
  node: string;
  /**
   * The ttl of a container's lock (default 30 s): how long a creation or removal whose replica
   * died blocks the reconcile from undoing or finishing it. Holders renew it every ttl/3.
   */
  lockTtlMs?: number;
  /**
   * How often at most the reconcile sweeps the nodes' container snapshots (default 5 min; see
   * sweepSnapshots). The first sweep comes one period after the manager starts.
   */
  snapshotSweepMs?: number;
}

/** Spec mount sources of the container's /etc files: its node's shim writes them and fills these in. */
const FILE_MOUNTS = {
  hosts: `${SHIM_FILE_SOURCE}${ShimFileName.hosts}`,
  resolvConf: `${SHIM_FILE_SOURCE}${ShimFileName.resolvConf}`,
  hostname: `${SHIM_FILE_SOURCE}${ShimFileName.hostname}`,
};

import { ignoreGone } from './collect.js';

export { ignoreGone };

/**
 * Labels of a container's rootfs snapshot (its key is snapshotKeyOf's): they name the container,
 * so a snapshot no creation accounts for can be found (see reconcileSnapshots).
 */
export const SnapshotLabel = { container: 'io.berth.container', namespace: 'io.berth.namespace' } as const;

/** How often at most the reconcile sweeps the nodes' container snapshots, by default. */
const SNAPSHOT_SWEEP_MS = 5 * 60_000;

/** A container lock's default ttl, and how long a caller waits for a lock another holds. */
const LOCK = { ttlMs: 30_000, waitMs: 60_000 };

/**
 * Containers as metadata (containerd's containers service plus nerdctl's spec building): create
 * resolves the image on the node, prepares the rootfs snapshot, generates the spec and stores it.
 */
export class ContainerManager {
  /**
   * When sweepSnapshots() last ran (ms); at first, when the manager was made: the reconcile at a
   * replica's start would find only young snapshots, and its node's snapshot-service may not
   * answer yet.
   */
  private sweptAt = Date.now();

  constructor(
    private readonly store: ContainerStore,
    private readonly redis: Redis,
    private readonly deps: Deps,
    private readonly env: ManagerEnv,
  ) {}

  /** Serializes changes to one container across replicas. */
  lock<T>(ns: string, id: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    const opts = { ttlMs: this.lockTtlMs, waitMs: LOCK.waitMs, what: `container ${id}` };
    return withLock(this.redis, keys.containerLock(ns, id), opts, fn);
  }

  private get lockTtlMs(): number {
    return this.env.lockTtlMs ?? LOCK.ttlMs;
  }

  /**
   * lock() whose first read goes out right behind the lock's acquire, one round trip for both:
   * Redis runs a connection's commands in order, so when the first attempt took the lock
   * (Lock.first) that read ran under it; after a wait for the lock, `read` runs again.
   */
  lockAndRead<R, T>(
    ns: string,
    id: string,
    read: () => Promise<R>,
    fn: (r: R, lock: Lock) => Promise<T>,
  ): Promise<T> {
    const done = this.lock(ns, id, async (lock) => fn(lock.first ? await early : await read(), lock));
    const early = read();
    // Awaited under the lock when it counts; a failure then is thrown there.
    early.catch(() => undefined);
    return done;
  }

  /**
   * Creates a container; on any failure nothing is left behind (name, snapshot, files). With
   * `attachAtStart`, a bridge container's namespace is only pinned here (`network-netns`) and
   * its record has no addresses yet: its first task's create attaches it (CNI ADD) beside `runc
   * create` (see TaskManager.createLocked), as `berth run` does.
   */
  async create(
    ns: string,
    input: CreateContainerRequest,
    opts: { attachAtStart?: boolean } = {},
  ): Promise<Container> {
    // The image record a caller passes is a read of the node's image-service it already made:
    // it is used, never stored (the container keeps the image's name, digest and chain).
    const { imageRecord, ...req } = input;
    if (imageRecord && imageRecord.name !== req.image) {
      throw errors.invalid(`imageRecord is the record of "${imageRecord.name}", not of image "${req.image}"`);
    }
    const node = req.node ?? this.env.node;
    if (!NODE_ID_PATTERN.test(node)) throw errors.invalid(`invalid node id "${node}"`);
    if (req.ports?.length && req.network !== 'bridge') {
      throw errors.invalid(`ports are published only with network "bridge", not "${req.network ?? 'none'}"`);
    }
    // The request is part of the record: one too large is refused before anything is made.
    checkRecordSize('the container config', req);
    // Checked before anything is made (a bind mount source on another node is its shim's to see).
    if (node === this.env.node) {
      for (const m of req.mounts ?? []) {
        if (!existsSync(m.source)) throw errors.invalid(`bind mount source "${m.source}" does not exist`);
      }
    }
    const id = randomBytes(32).toString('hex');
    const name = req.name ?? defaultName(req.image, id);
    const intent: CreateIntent = {
      id,
      name,
      node,
      bridge: req.network === 'bridge',
      startedAt: new Date().toISOString(),
    };
    // Under the container's lock, held until the record is stored or the creation undone: the
    // reconcile takes the same lock before it undoes a creation, so it only ever undoes one whose
    // replica died (its lock expired), never one still under way. The intent (with the name) is
    // recorded so that whatever a crash leaves behind can be found and undone. Both go out at
    // once, one round trip: the lock's command is sent first on the same Redis connection
    // (ioredis keeps a connection's order), so Redis holds the lock of this new id before any
    // reconcile can see its intent.
    let entered = false;
    const made = this.lock(ns, id, (lock) => {
      entered = true;
      return this.createLocked(ns, req, {
        intent,
        lock,
        begun,
        rootfs,
        attachAtStart: opts.attachAtStart === true,
      });
    });
    const begun = this.store.beginCreateNamed(ns, intent);
    // Awaited by createLocked once the lock is held; a refusal is thrown there.
    begun.catch(() => undefined);
    // The rootfs snapshot is prepared during that round trip, not after it. Its key and labels
    // name this container, so one whose creation left no intent (the replica died before Redis
    // had it) is found and removed by reconcileSnapshots(); every failure below waits for the
    // prepare to settle and removes the snapshot it made.
    const rootfs = this.prepareRootfs(ns, req, { id, node, imageRecord });
    rootfs.catch(() => undefined);
    return made.catch(async (err: unknown) => {
      if (!entered) {
        // The lock was never taken (Redis failed the call): an intent recorded anyway is undone
        // with the snapshot; without one, the snapshot alone is removed.
        const recorded = await settled(begun);
        const prepared = await settled(rootfs);
        if (recorded) await this.undoCreate(ns, intent, prepared).catch(() => undefined);
        else if (prepared) await this.dropRootfs(ns, intent);
      }
      throw err;
    });
  }

  private async createLocked(
    ns: string,
    req: CreateContainerRequest,
    {
      intent,
      lock,
      begun,
      rootfs,
      attachAtStart,
    }: {
      intent: CreateIntent;
      lock: Lock;
      begun: Promise<void>;
      rootfs: Promise<PreparedRootfs>;
      attachAtStart: boolean;
    },
  ): Promise<Container> {
    const { id, name, node } = intent;
    try {
      await begun;
    } catch (err) {
      // No intent (the name is taken): the snapshot is all that was made.
      if (await settled(rootfs)) await this.dropRootfs(ns, intent);
      throw err;
    }
    const snapshotKey = snapshotKeyOf(ns, id);
    let networked = false;
    try {
      // A bridge container's network (a pinned namespace, then the CNI chain's ADD on its node's
      // shim: the longest step here) needs nothing of the image or its snapshot: it runs beside
      // the prepare, once the intent that covers it is recorded. Both settle before a failure is
      // thrown, so the undo below sees all that was made.
      networked = req.network === 'bridge';
      const shim = networked ? this.deps.shim(node, ns) : undefined;
      const [made, net] = await Promise.allSettled([
        rootfs,
        shim
          ? attachAtStart
            ? shim['network-netns']({ podId: id }).then((n) => ({ netnsPath: n.netnsPath, ips: [] }))
            : shim['network-setup']({ podId: id, portMappings: req.ports ?? [] })
          : undefined,
      ]);
      if (made.status === 'rejected') throw made.reason;
      if (net.status === 'rejected') throw net.reason;
      const { image, rootfs: mounts } = made.value;
      // A bridge container is a one-container pod: its node's shim pins the namespace and runs
      // CNI (the shim owns every namespace and lease), and the spec joins that namespace.
      let network: Container['network'];
      if (net.value) network = { netnsPath: net.value.netnsPath, ips: podAddresses(net.value.ips) };
      const gen = generateSpec(
        {
          id,
          namespace: ns,
          request: network ? { ...req, network: network.netnsPath } : req,
          image: image.config.config,
          files: FILE_MOUNTS,
        },
        // The host name of a container in the host network is its node's: the shim there sets it.
        '',
      );
      const now = new Date().toISOString();
      const c: Container = {
        id,
        namespace: ns,
        name,
        image: { name: image.name, digest: image.target.digest, chainId: image.chainId },
        node,
        spec: gen.spec,
        snapshotKey,
        rootfs: mounts,
        labels: req.labels ?? {},
        runtime: { name: RUNTIME_NAME },
        io: {
          terminal: req.tty ?? false,
          stdin: req.stdin ?? false,
          // Without one, the shim keeps the log in the container's directory on its node, so the
          // log of every run stays until the container is removed, as docker keeps it.
          ...(req.logPath ? { logPath: req.logPath } : {}),
        },
        stopSignal: gen.stopSignal,
        // The request, with what it left to defaults: the node, the user (the image's).
        config: { ...req, node, user: gen.user },
        ...(network ? { network } : {}),
        createdAt: now,
        updatedAt: now,
      };
      // The spec adds the image's settings to the request's: the whole record must fit a reply.
      checkRecordSize('the container record', c);
      // Stored, intent forgotten and lock released in one round trip.
      await this.store.commitCreate(c, lock);
      this.deps.publish(TaskTopic.containerCreate, ns, {
        id,
        name,
        image: c.image.name,
        node,
        runtime: RUNTIME_NAME,
      });
      return c;
    } catch (err) {
      // Undone in reverse order; a step that fails (its node's shim or snapshot-service is down)
      // keeps the intent, and the reconcile finishes the undo once they are back. A prepare that
      // failed made nothing (one that timed out and made it anyway is left to reconcileSnapshots).
      const prepared = await settled(rootfs);
      await this.undoCreate(ns, { ...intent, bridge: networked }, prepared).catch(() => undefined);
      throw err;
    }
  }

  /** The image on the container's node (unpacked) and the rootfs snapshot prepared from it. */
  private async prepareRootfs(
    ns: string,
    req: CreateContainerRequest,
    { id, node, imageRecord }: { id: string; node: string; imageRecord?: ImageRecord | undefined },
  ): Promise<PreparedRootfs> {
    // The record a caller passed (the CRI gateway's image view) saves the image-service a call.
    const image = imageRecord ?? (await this.deps.images(node, ns).get({ name: req.image }));
    if (!image.chainId) {
      throw errors.precondition(`image "${req.image}" is not unpacked on node "${node}"`);
    }
    // Users, capabilities and the command's presence are facts of the node's rootfs and kernel:
    // its shim resolves them at task create (see spec/node-facts.ts), never this replica.
    const { mounts: rootfs } = await this.deps.snapshots(node).prepare({
      key: snapshotKeyOf(ns, id),
      parent: image.chainId,
      labels: { [SnapshotLabel.container]: id, [SnapshotLabel.namespace]: ns },
    });
    return { image, rootfs };
  }

  /**
   * Undoes a creation in reverse order (network, snapshot, name), then forgets its intent. Each
   * step is idempotent; the first that fails stops the undo with everything before it in place.
   */
  private async undoCreate(ns: string, i: CreateIntent, prepared = true): Promise<void> {
    if (i.bridge) await releaseNetwork(this.deps, i.node, ns, i.id);
    if (prepared) await ignoreGone(this.deps.snapshots(i.node).remove({ key: snapshotKeyOf(ns, i.id) }));
    await this.store.releaseName(ns, i.name, i.id);
    await this.store.endCreate(ns, i.id);
  }

  /**
   * Removes the rootfs snapshot of a creation that recorded no intent (its prepare succeeded).
   * One that cannot be removed now (its snapshot-service is down) is left to reconcileSnapshots().
   */
  private async dropRootfs(ns: string, i: CreateIntent): Promise<void> {
    await ignoreGone(this.deps.snapshots(i.node).remove({ key: snapshotKeyOf(ns, i.id) })).catch(
      () => undefined,
    );
  }

  /**
   * Finishes or undoes the creations a replica left half-made when it died: one whose record was
   * stored is finished (its intent forgotten); one without a record is undone once its lock is
   * free (the creator is gone). Returns how many were undone.
   */
  async reconcileCreations(ns: string): Promise<number> {
    let undone = 0;
    for (const i of await this.store.creating(ns)) {
      if (await this.store.get(ns, i.id)) {
        await this.store.endCreate(ns, i.id);
        continue;
      }
      const opts = { ttlMs: this.lockTtlMs, what: `container ${i.id}` };
      await withLockIfFree(this.redis, keys.containerLock(ns, i.id), opts, async (lock) => {
        // Checked again under the lock: the creator may have stored it just before it let go.
        if (await this.store.get(ns, i.id)) await this.store.endCreate(ns, i.id);
        else {
          // A lock lost before the undo (Redis away past the ttl) leaves it to the next pass.
          lock.lost?.throwIfAborted();
          await this.undoCreate(ns, i);
          undone++;
        }
      });
    }
    return undone;
  }

  /**
   * reconcileSnapshots() of this replica's node and of `nodes` (those containers are on), at most
   * once every snapshotSweepMs: a snapshot left without an intent needs a crash, and a list of a
   * node's snapshots is not free. A node that fails is reported to `onError` and skipped. Returns
   * how many snapshots were removed.
   */
  async sweepSnapshots(
    nodes: Iterable<string>,
    onError: (err: unknown, node: string) => void,
  ): Promise<number> {
    const now = Date.now();
    if (now - this.sweptAt < (this.env.snapshotSweepMs ?? SNAPSHOT_SWEEP_MS)) return 0;
    this.sweptAt = now;
    let removed = 0;
    for (const node of new Set([this.env.node, ...nodes])) {
      try {
        removed += await this.reconcileSnapshots(node);
      } catch (err) {
        onError(err, node);
      }
    }
    return removed;
  }

  /**
   * Removes the container rootfs snapshots of `node` that nothing accounts for: no container
   * record, creation intent or pending collection names them. A creation prepares its snapshot
   * while its intent goes to Redis, so a replica that died in between (or a removal of a refused
   * creation's snapshot that failed) leaves one. Spared: snapshots younger than a lock's ttl (a
   * creation may still be under way) and those whose container's lock is held. Returns how many
   * were removed.
   */
  async reconcileSnapshots(node: string): Promise<number> {
    const snapshots = this.deps.snapshots(node);
    const opts = { ttlMs: this.lockTtlMs, what: 'a container snapshot' };
    let removed = 0;
    let cursor: string | undefined;
    do {
      const page = await snapshots.list({
        filters: [`labels."${SnapshotLabel.container}"`],
        ...(cursor ? { cursor } : {}),
      });
      const now = Date.now();
      for (const s of page.snapshots) {
        const ns = s.labels[SnapshotLabel.namespace] ?? '';
        const id = s.labels[SnapshotLabel.container] ?? '';
        if (!NAMESPACE_PATTERN.test(ns) || !CONTAINER_ID_PATTERN.test(id)) continue;
        if (s.name !== snapshotKeyOf(ns, id) || now - Date.parse(s.createdAt) < this.lockTtlMs) continue;
        if (await this.store.accounts(ns, id)) continue;
        const done = await withLockIfFree(this.redis, keys.containerLock(ns, id), opts, async (lock) => {
          // Checked again under the lock: a creation may have recorded it meanwhile.
          if (await this.store.accounts(ns, id)) return false;
          lock.lost?.throwIfAborted();
          await ignoreGone(snapshots.remove({ key: s.name }));
          return true;
        });
        if (done?.value) removed++;
      }
      cursor = page.nextCursor;
    } while (cursor);
    return removed;
  }

  /** One container and its task, as a reply can carry it (see limits.ts `replyable`). */
  async get(ns: string, ref: string): Promise<ContainerInfo> {
    return replyable(await this.store.info(await this.store.resolve(ns, ref)));
  }

  /** One page of the containers matching every filter, newest first (see listing.ts). */
  list(ns: string, req: ListContainersRequest): Promise<Page<ContainerInfo>> {
    return listPage(this.store, ns, req);
  }

  /** Merges labels and replaces resources in the stored spec. */
  async update(ns: string, req: UpdateContainerRequest): Promise<Container> {
    const full = CONTAINER_ID_PATTERN.test(req.id);
    const id = full ? req.id : (await this.store.resolve(ns, req.id)).id;
    return this.lockAndRead(
      ns,
      id,
      () => this.store.get(ns, id),
      async (got, lock) => {
        if (!got) throw errors.notFound(`container "${req.id}" not found`);
        const c = got;
        const labels = { ...c.labels };
        for (const [k, v] of Object.entries(req.labels ?? {})) {
          if (v === '') delete labels[k];
          else labels[k] = v;
        }
        const resources = { ...c.config.resources, ...req.resources };
        const linux = {
          ...(c.spec.linux as Record<string, unknown>),
          resources: linuxResources(resources, c.config.privileged ?? false),
        };
        const next: Container = {
          ...c,
          labels,
          spec: { ...c.spec, linux },
          config: { ...c.config, resources },
          updatedAt: new Date().toISOString(),
        };
        checkRecordSize('the updated container record', next);
        // Stored and the lock released in one round trip.
        await this.store.putAndRelease(next, lock);
        // updatedAt tells a reader holding this very record (a view set from the reply) it has it.
        this.deps.publish(TaskTopic.containerUpdate, ns, {
          id: c.id,
          name: c.name,
          labels,
          updatedAt: next.updatedAt,
        });
        return next;
      },
    );
  }

  /**
   * Removes the container's snapshot, files and metadata. The caller (task manager) has already
   * deleted its task; the files and kept log are on its node, so that node's shim removes them.
   */
  async remove(c: Container): Promise<void> {
    // The reverse of how it was made (snapshot, network, record; then its task's files): a step
    // that fails (its shim is down) leaves the container whole, never a record whose snapshot is
    // gone, and the record (marked removing) stays for the reconcile to finish the removal.
    await freeOnNode(this.deps, c);
    await this.store.delete(c);
    this.deps.publish(TaskTopic.containerDelete, c.namespace, { id: c.id, name: c.name });
  }

  /** Frees what a container removed for collection held (see collect.ts); false when another replica is. */
  collect(c: Container): Promise<boolean> {
    return collect(this.collectDeps(), c);
  }

  /** Finishes the collections a replica left undone; returns how many it finished. */
  reconcileCollections(ns: string, onError: (err: unknown, c: Container) => void): Promise<number> {
    return collectAll(this.collectDeps(), ns, onError);
  }

  private collectDeps() {
    return { store: this.store, redis: this.redis, deps: this.deps, lockTtlMs: this.lockTtlMs };
  }
}

/** A container's image and the mounts of its prepared rootfs snapshot. */
interface PreparedRootfs {
  image: ImageRecord;
  rootfs: Mount[];
}

/** Whether a promise fulfilled, once it has settled. */
function settled(p: Promise<unknown>): Promise<boolean> {
  return p.then(
    () => true,
    () => false,
  );
}

/** The key of a container's rootfs snapshot. */
function snapshotKeyOf(ns: string, id: string): string {
  return `containers/${ns}/${id}`;
}

/** nerdctl-style default name: the image's last path component and a short id. */
function defaultName(image: string, id: string): string {
  const base = image.split('@')[0]?.split('/').pop()?.split(':')[0] ?? 'container';
  const clean = base.replace(/[^a-zA-Z0-9_.-]/g, '').replace(/^[^a-zA-Z0-9]+/, '');
  return `${clean || 'container'}-${id.slice(0, 5)}`;
}
