import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  BerthError,
  CONTAINER_ID_PATTERN,
  Code,
  type Container,
  type ContainerInfo,
  type CreateContainerRequest,
  errors,
  type ImageRecord,
  type ListContainersRequest,
  type Mount,
  NODE_ID_PATTERN,
  podAddresses,
  RUNTIME_NAME,
  SHIM_FILE_SOURCE,
  ShimFileName,
  TaskTopic,
  toBerthError,
  type UpdateContainerRequest,
} from '@berth/api';
import {
  keys,
  type Lock,
  type Page,
  type Redis,
  type ServiceContext,
  settleWithin,
  withLock,
  withLockIfFree,
} from '@berth/kit';

type Logger = ServiceContext['log'];

import type { Deps } from '../deps.js';
import { generateSpec, linuxResources, mergeResources } from '../spec/index.js';
import type { ContainerStore, CreateIntent } from '../store/store.js';
import { collect, collectAll, dropUnrecordedTasks, freeOnNode, releaseNetwork } from './collect.js';
import { type FreeReport, type FreeRetries, LockWaitExceeded } from './free-retries.js';
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
  /** How long a caller waits for a container's lock another holds (default 60 s). */
  lockWaitMs?: number;
}

/** Spec mount sources of the container's /etc files: its node's shim writes them and fills these in. */
const FILE_MOUNTS = {
  hosts: `${SHIM_FILE_SOURCE}${ShimFileName.hosts}`,
  resolvConf: `${SHIM_FILE_SOURCE}${ShimFileName.resolvConf}`,
  hostname: `${SHIM_FILE_SOURCE}${ShimFileName.hostname}`,
};

import { ignoreGone } from './collect.js';

export { ignoreGone };

/** A container lock's default ttl, and how long a caller waits for a lock another holds. */
const LOCK = { ttlMs: 30_000, waitMs: 60_000 };

/**
 * Containers as metadata (containerd's containers service plus nerdctl's spec building): create
 * resolves the image on the node, prepares the rootfs snapshot, generates the spec and stores it.
 */
export class ContainerManager {
  /** Per container (settlingKey), a creation of this replica still preparing its rootfs after its reply. */
  private readonly settling = new Map<string, Promise<unknown>>();
  /** Set once claimedChains began indexing the claims stored before the index (see there). */
  private claimsIndexed: Promise<void> | undefined;

  constructor(
    private readonly store: ContainerStore,
    private readonly redis: Redis,
    private readonly deps: Deps,
    private readonly env: ManagerEnv,
    private readonly log?: Pick<Logger, 'warn'>,
  ) {}

  /**
   * Serializes changes to one container across replicas. A creation of this replica still
   * holding the lock to prepare the rootfs after its reply is waited for first, so the next call
   * (the start that follows a CRI create) takes the lock when it is let go, not after a retry's
   * backoff. A wait that runs out throws LockWaitExceeded (DEADLINE_EXCEEDED, see free-retries.ts).
   */
  lock<T>(ns: string, id: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    // Only then deferred: otherwise the acquire goes out in this call (lockAndRead counts on it).
    const settling = this.settling.get(settlingKey(ns, id));
    if (settling) return settling.then(() => this.lock(ns, id, fn));
    const opts = {
      ttlMs: this.lockTtlMs,
      waitMs: this.env.lockWaitMs ?? LOCK.waitMs,
      what: `container ${id}`,
    };
    let entered = false;
    const held = (lock: Lock) => {
      entered = true;
      return fn(lock);
    };
    return withLock(this.redis, keys.containerLock(ns, id), opts, held).catch((err: unknown) => {
      // Before fn ran, DEADLINE_EXCEEDED is the wait for another holder, not a node that hangs.
      if (!entered && err instanceof BerthError && err.code === Code.DEADLINE_EXCEEDED) {
        throw new LockWaitExceeded(err);
      }
      throw err;
    });
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
    // The read must follow the acquire: both wait for a creation still preparing the rootfs.
    const settling = this.settling.get(settlingKey(ns, id));
    if (settling) return settling.then(() => this.lockAndRead(ns, id, read, fn));
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
    const { imageRecord, prepareAfterReply, id: chosenId, ...req } = input;
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
    const id = chosenId ?? randomBytes(32).toString('hex');
    const name = req.name ?? defaultName(req.image, id);
    if (prepareAfterReply === true && req.network !== 'bridge') {
      return this.createThenPrepare(ns, req, { id, name, node, imageRecord });
    }
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
    // recorded before anything is made, so whatever a crash leaves behind can be found and undone.
    // Both go out at once, one round trip: the lock's command is sent first on the same Redis
    // connection (ioredis keeps a connection's order), so Redis holds the lock of this new id
    // before any reconcile can see its intent.
    let entered = false;
    const made = this.lock(ns, id, (lock) => {
      entered = true;
      return this.createLocked(ns, req, {
        intent,
        lock,
        imageRecord,
        begun,
        attachAtStart: opts.attachAtStart === true,
      });
    });
    const begun = this.store.beginCreateNamed(ns, intent);
    // Awaited by createLocked once the lock is held; a refusal is thrown there.
    begun.catch(() => undefined);
    return made.catch(async (err: unknown) => {
      // The lock was never taken (Redis failed the call): an intent recorded anyway is undone.
      if (
        !entered &&
        (await begun.then(
          () => true,
          () => false,
        ))
      ) {
        await this.undoCreate(ns, intent, false).catch(() => undefined);
      }
      throw err;
    });
  }

  /**
   * create() with the rootfs prepared after the reply (CreateContainerRequest.prepareAfterReply).
   * Nothing is made before the record, so no intent is needed: the record and its name are stored
   * by one script sent right behind the lock's acquire (one round trip; the lock of a new id is
   * free, so the script runs under it), the caller is answered, and the snapshot is prepared
   * under the lock after. Calls of this replica on the container wait for that (`settling`).
   */
  private async createThenPrepare(
    ns: string,
    req: CreateContainerRequest,
    {
      id,
      name,
      node,
      imageRecord,
    }: { id: string; name: string; node: string; imageRecord?: ImageRecord | undefined },
  ): Promise<Container> {
    const image = await this.imageOf(ns, req, node, imageRecord);
    checkBindSources(node === this.env.node, req);
    const c = this.record(ns, req, { id, name, node, image });
    checkRecordSize('the container record', c);
    let answer: (c: Container) => void = () => undefined;
    const answered = new Promise<Container>((resolve) => {
      answer = resolve;
    });
    let entered = false;
    const made = this.lock(ns, id, async (lock) => {
      entered = true;
      try {
        // A name another container holds: thrown here, the lock let go, nothing stored.
        await stored;
      } catch (err) {
        // Any other failure (a WAIT for replicas, a reply lost with the connection) may come
        // after Redis applied the script: undone under the lock, since no intent names it.
        if (toBerthError(err).code !== Code.ALREADY_EXISTS) await this.store.delete(c).catch(() => undefined);
        throw err;
      }
      this.publishCreate(c);
      answer(c);
      await this.prepareAfterReply(c, lock);
      return c;
    });
    const stored = this.store.createNamed(c);
    stored.catch(() => undefined);
    const key = settlingKey(ns, id);
    this.settling.set(
      key,
      made.then(
        () => this.settling.delete(key),
        () => this.settling.delete(key),
      ),
    );
    const result = made.catch(async (err: unknown) => {
      // The lock was never taken (Redis failed the call): a record stored anyway is removed.
      if (
        !entered &&
        (await stored.then(
          () => true,
          () => false,
        ))
      ) {
        await this.store.delete(c).catch(() => undefined);
      }
      throw err;
    });
    // Nothing is thrown after the answer (prepareAfterReply throws nothing), so `result` only
    // fails before it.
    return Promise.race([answered, result]);
  }

  /**
   * Resolves once a creation of this replica has prepared the container's rootfs after its reply
   * (see CreateContainerRequest.prepareAfterReply); at once when none is under way.
   */
  async settled(ns: string, id: string): Promise<void> {
    await this.settling.get(settlingKey(ns, id));
  }

  /**
   * The mounts of a container's rootfs: those its record keeps, else its snapshot's; a record
   * whose snapshot was never made (a prepare after the reply that failed, or a replica that died
   * before it) has it prepared now. The caller holds the container's lock.
   */
  async rootfsOf(c: Container): Promise<Mount[]> {
    if (c.rootfs) return c.rootfs;
    const mounts = async () => (await this.deps.snapshots(c.node).mounts({ key: c.snapshotKey })).mounts;
    try {
      return await mounts();
    } catch (err) {
      if (toBerthError(err).code !== Code.NOT_FOUND) throw err;
    }
    if (!c.image.chainId) {
      throw errors.precondition(
        `container "${c.name}" has no rootfs snapshot and its image no unpacked chain`,
      );
    }
    try {
      return await this.prepareSnapshot(c.namespace, c.id, c.node, c.image.chainId);
    } catch (err) {
      // A prepare that outlived its caller (a timeout, a replica gone) made it meanwhile.
      if (toBerthError(err).code !== Code.ALREADY_EXISTS) throw err;
      return mounts();
    }
  }

  private async createLocked(
    ns: string,
    req: CreateContainerRequest,
    {
      intent,
      lock,
      imageRecord,
      begun,
      attachAtStart,
    }: {
      intent: CreateIntent;
      lock: Lock;
      imageRecord?: ImageRecord | undefined;
      begun: Promise<void>;
      attachAtStart: boolean;
    },
  ): Promise<Container> {
    const { id, name, node } = intent;
    await begun;
    let prepared = false;
    let networked = false;
    try {
      checkBindSources(node === this.env.node, req);
      // A bridge container's network (a pinned namespace, then the CNI chain's ADD on its node's
      // shim: the longest step here) needs nothing of the image or its snapshot: it runs beside
      // them. Both settle before a failure is thrown, so the undo below sees all that was made.
      networked = req.network === 'bridge';
      const shim = this.deps.shim(node, ns);
      const [made, net] = await Promise.allSettled([
        this.prepareRootfs(ns, req, { id, node, imageRecord }).then((r) => {
          prepared = true;
          return r;
        }),
        networked
          ? attachAtStart
            ? shim['network-netns']({ podId: id }).then((n) => ({ netnsPath: n.netnsPath, ips: [] }))
            : shim['network-setup']({ podId: id, portMappings: req.ports ?? [] })
          : undefined,
      ]);
      if (made.status === 'rejected') throw made.reason;
      if (net.status === 'rejected') throw net.reason;
      const { image, rootfs } = made.value;
      // A bridge container is a one-container pod: its node's shim pins the namespace and runs
      // CNI (the shim owns every namespace and lease), and the spec joins that namespace.
      let network: Container['network'];
      if (net.value) network = { netnsPath: net.value.netnsPath, ips: podAddresses(net.value.ips) };
      const c = this.record(ns, req, { id, name, node, image, rootfs, network });
      // The spec adds the image's settings to the request's: the whole record must fit a reply.
      checkRecordSize('the container record', c);
      // Stored, intent forgotten and lock released in one round trip.
      await this.store.commitCreate(c, lock);
      this.publishCreate(c);
      return c;
    } catch (err) {
      // Undone in reverse order; a step that fails (its node's shim or snapshot-service is down)
      // keeps the intent, and the reconcile finishes the undo once they are back.
      await this.undoCreate(ns, { ...intent, bridge: networked }, prepared).catch(() => undefined);
      throw err;
    }
  }

  /** The record of a new container: the request, the spec made of it and the image, its mounts. */
  private record(
    ns: string,
    req: CreateContainerRequest,
    {
      id,
      name,
      node,
      image,
      rootfs,
      network,
    }: {
      id: string;
      name: string;
      node: string;
      image: ImageRecord;
      rootfs?: Mount[];
      network?: Container['network'];
    },
  ): Container {
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
    return {
      id,
      namespace: ns,
      name,
      image: { name: image.name, digest: image.target.digest, chainId: image.chainId },
      node,
      spec: gen.spec,
      snapshotKey: snapshotKeyOf(ns, id),
      ...(rootfs ? { rootfs } : {}),
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
  }

  private publishCreate(c: Container): void {
    this.deps.publish(TaskTopic.containerCreate, c.namespace, {
      id: c.id,
      name: c.name,
      image: c.image.name,
      node: c.node,
      runtime: RUNTIME_NAME,
    });
  }

  /**
   * The rootfs of a container just stored without it, prepared and kept in its record (released
   * with the lock in the same round trip). Throws nothing: the record stands either way, and a
   * task create prepares what is missing (rootfsOf).
   */
  private async prepareAfterReply(c: Container, lock: Lock): Promise<void> {
    const { namespace: ns, id } = c;
    try {
      // Begun once the reply is written (nats.js sends it from a microtask; setImmediate runs after
      // this turn's I/O), so the two do not leave in one write and wake the caller and the
      // snapshot-service at the same moment on a busy node (docs/benchmarks.md, 2026-12-03).
      await new Promise((resolve) => setImmediate(resolve));
      if (!c.image.chainId) throw errors.precondition(`image "${c.image.name}" has no unpacked chain`);
      const rootfs = await this.prepareSnapshot(ns, id, c.node, c.image.chainId);
      // A record that would outgrow the limit with them goes without: task create asks for them.
      checkRecordSize('the container record with its rootfs mounts', { ...c, rootfs });
      lock.lost?.throwIfAborted();
      // Fenced, and only onto the record as stored: one a holder after a lost lock changed or
      // removed is left as it is.
      if (!(await this.store.addRootfsAndRelease(c, rootfs, lock))) {
        this.log?.warn(
          { ns, id },
          'the rootfs mounts were not added: the record changed or the lock was lost',
        );
      }
    } catch (err) {
      this.log?.warn(
        { err: (err as Error).message, ns, id },
        'preparing the rootfs after the create reply failed: the first task create prepares it again',
      );
    }
  }

  /**
   * Waits, at most `timeoutMs`, for the rootfs prepares this replica began after its replies, so
   * a graceful stop does not leave their locks to expire under the next replica's start.
   */
  settle(timeoutMs: number): Promise<void> {
    return settleWithin([...this.settling.values()], timeoutMs);
  }

  /** The image on the container's node (unpacked) and the rootfs snapshot prepared from it. */
  private async prepareRootfs(
    ns: string,
    req: CreateContainerRequest,
    { id, node, imageRecord }: { id: string; node: string; imageRecord?: ImageRecord | undefined },
  ): Promise<{ image: ImageRecord; rootfs: Mount[] }> {
    const image = await this.imageOf(ns, req, node, imageRecord);
    return { image, rootfs: await this.prepareSnapshot(ns, id, node, image.chainId ?? '') };
  }

  /** The record of the request's image on the node, which must be unpacked. */
  private async imageOf(
    ns: string,
    req: CreateContainerRequest,
    node: string,
    imageRecord: ImageRecord | undefined,
  ): Promise<ImageRecord> {
    // The record a caller passed (the CRI gateway's image view) saves the image-service a call.
    const image = imageRecord ?? (await this.deps.images(node, ns).get({ name: req.image }));
    if (!image.chainId) {
      throw errors.precondition(`image "${req.image}" is not unpacked on node "${node}"`);
    }
    return image;
  }

  /** Prepares container `id`'s rootfs snapshot on its node from the image's chain; its mounts. */
  private async prepareSnapshot(ns: string, id: string, node: string, chainId: string): Promise<Mount[]> {
    // Users, capabilities and the command's presence are facts of the node's rootfs and kernel:
    // its shim resolves them at task create (see spec/node-facts.ts), never this replica.
    const { mounts } = await this.deps.snapshots(node).prepare({
      key: snapshotKeyOf(ns, id),
      parent: chainId,
      labels: { 'io.berth.container': id, 'io.berth.namespace': ns },
    });
    return mounts;
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
   * The image chains of the containers on `node` whose create answered before their rootfs was
   * prepared and stored (prepareAfterReply): roots of the node's snapshot GC, since the image may
   * be removed before the prepare, which (or the first task create) still needs the chain.
   */
  async claimedChains(node: string): Promise<string[]> {
    // Claims a task-service of the version before the index stored are indexed first, once per
    // replica (a failure fails this call, and GC with it, and the next call tries again); those a
    // replica of that version still running stores later are indexed by the reconcile.
    this.claimsIndexed ??= this.indexAllClaims().catch((err: unknown) => {
      this.claimsIndexed = undefined;
      throw err;
    });
    await this.claimsIndexed;
    return this.store.claimedChains(node);
  }

  /** Indexes every namespace's chain claims not yet indexed (see ContainerStore.indexClaims). */
  private async indexAllClaims(): Promise<void> {
    for (const ns of await this.store.namespaces()) await this.store.indexClaims(ns);
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
        const resources = mergeResources(c.config.resources ?? {}, req.resources ?? {});
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

  /** Finishes the collections a replica left undone, those due (see collectAll); returns how many it finished. */
  reconcileCollections(ns: string, retries: FreeRetries, report: FreeReport): Promise<number> {
    return collectAll(this.collectDeps(), ns, retries, report);
  }

  /** Drops the tasks shims run for containers of `ns` without one on record (see collect.ts). */
  dropUnrecordedTasks(
    ns: string,
    taskless: Container[],
    onError: (err: unknown, node: string) => void,
  ): Promise<number> {
    return dropUnrecordedTasks(this.collectDeps(), ns, taskless, onError);
  }

  private collectDeps() {
    return { store: this.store, redis: this.redis, deps: this.deps, lockTtlMs: this.lockTtlMs };
  }
}

/** Refuses bind mounts whose source is missing, when the container's node is this one (else its shim checks). */
function checkBindSources(local: boolean, req: CreateContainerRequest): void {
  if (!local) return;
  for (const m of req.mounts ?? []) {
    if (!existsSync(m.source)) throw errors.invalid(`bind mount source "${m.source}" does not exist`);
  }
}

/** The key of a container in ContainerManager's settling map. */
function settlingKey(ns: string, id: string): string {
  return `${ns}/${id}`;
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
