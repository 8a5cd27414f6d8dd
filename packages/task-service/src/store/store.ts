import {
  type BerthError,
  CONTAINER_ID_PATTERN,
  type Container,
  type ContainerInfo,
  type ContainerStatus,
  errors,
  exitReason,
  type Mount,
  type Task,
  type TaskExit,
} from '@berth/api';
import { isFenced, keys, type Lock, type Redis } from '@berth/kit';
import type { ChainableCommander } from 'ioredis';
import {
  ADD_ROOTFS,
  BEGIN_CREATE,
  CHAIN_CLAIM_FIELD,
  CREATE_NAMED,
  INDEX_CLAIM,
  MARK_REMOVING,
  RECORD_EXIT,
  RELEASE_NAME,
  REMOVE_DONE,
  SET_STATUS,
  UNINDEX_STALE_CLAIM,
} from './scripts.js';

/** Where a container stands in a listing: by creation time, then id. */
export interface ListPosition {
  createdAt: string;
  id: string;
}

/** Orders positions oldest first (ISO times compare as strings); listings run it backwards. */
export function comparePositions(a: ListPosition, b: ListPosition): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A creation in progress: enough to undo it if its replica dies before finishing. */
export interface CreateIntent {
  id: string;
  name: string;
  node: string;
  /** Whether it gets a bridge network (a pinned netns and a CNI lease on its node). */
  bridge: boolean;
  startedAt: string;
}

/**
 * Container and task metadata in Redis, per namespace (keys from @berth/kit keys.ts). Containers
 * are one JSON document each; tasks are hashes so exits can be recorded atomically by a script.
 */
export class ContainerStore {
  constructor(private readonly redis: Redis) {}

  /** Reserves a name for an id; ALREADY_EXISTS when another container holds it. */
  async reserveName(ns: string, name: string, id: string): Promise<void> {
    const ok = await this.redis.set(keys.containerName(ns, name), id, 'NX');
    if (ok !== 'OK') {
      throw nameInUse(name, await this.redis.get(keys.containerName(ns, name)));
    }
  }

  /**
   * Records that the creation of a container began and reserves its name, in one step;
   * ALREADY_EXISTS (and neither recorded) when another container holds the name.
   */
  async beginCreateNamed(ns: string, i: CreateIntent): Promise<void> {
    const r = await this.redis.eval(
      BEGIN_CREATE,
      4,
      keys.containerName(ns, i.name),
      keys.containersCreating(ns),
      keys.container(ns, i.id),
      keys.containersCollecting(ns),
      i.id,
      JSON.stringify(i),
    );
    if (r === 0) throw idInUse(i.id);
    if (r !== 1) throw nameInUse(i.name, r);
  }

  /**
   * Stores the record of a new container and reserves its name, in one step; ALREADY_EXISTS (and
   * neither stored) when another container holds the name. A record without rootfs mounts claims
   * its image's chain in the same step (see claimedChains), until addRootfsAndRelease or removal.
   */
  async createNamed(c: Container): Promise<void> {
    const claim: ChainClaim | undefined =
      !c.rootfs && c.image.chainId ? { node: c.node, chainId: c.image.chainId } : undefined;
    const r = await this.redis.eval(
      CREATE_NAMED,
      6,
      keys.containerName(c.namespace, c.name),
      keys.container(c.namespace, c.id),
      keys.containers(c.namespace),
      keys.containersCreating(c.namespace),
      keys.containersCollecting(c.namespace),
      keys.chainClaims(c.node),
      c.id,
      JSON.stringify(c),
      c.name,
      c.createdAt,
      claim ? JSON.stringify(claim) : '',
      claimMember(c.namespace, c.id),
    );
    if (r === 0) throw idInUse(c.id);
    if (r !== 1) throw nameInUse(c.name, r);
  }

  /**
   * The image chains containers on `node`, in every namespace, claim (createNamed): stored without
   * their rootfs snapshot, whose prepare has not stored its mounts yet. Read through the node's
   * index (keys.chainClaims), a few bytes per claim of the node, whatever the cluster holds; the
   * claim itself is the record's field, so an index entry whose record holds none (left by a
   * task-service of the version before the index, which dropped only the field) is not reported
   * and is dropped. Claims that version made are indexed by indexClaims.
   */
  async claimedChains(node: string): Promise<string[]> {
    const index = keys.chainClaims(node);
    const refs = (await this.redis.smembers(index)).flatMap((m) => {
      const at = m.indexOf('/');
      return at > 0 ? [{ member: m, ns: m.slice(0, at), id: m.slice(at + 1) }] : [];
    });
    if (refs.length === 0) return [];
    const p = this.redis.pipeline();
    for (const r of refs) p.hget(keys.container(r.ns, r.id), CHAIN_CLAIM_FIELD);
    const out = new Set<string>();
    const stale: typeof refs = [];
    ((await p.exec()) ?? []).forEach(([err, v], i) => {
      if (err) throw err;
      const ref = refs[i];
      if (!ref) return;
      if (typeof v !== 'string') stale.push(ref);
      else {
        const claim = JSON.parse(v) as ChainClaim;
        if (claim.node === node) out.add(claim.chainId);
      }
    });
    if (stale.length > 0) {
      const drop = this.redis.pipeline();
      for (const r of stale) drop.eval(UNINDEX_STALE_CLAIM, 2, keys.container(r.ns, r.id), index, r.member);
      for (const [err] of (await drop.exec()) ?? []) if (err) throw err;
    }
    return [...out];
  }

  /**
   * Indexes the chain claims of the containers `ids` of a namespace that are not indexed (records
   * a task-service of the version before the index stored), each only while its record still
   * holds that claim; returns how many it indexed. Without `ids`, every container of the namespace.
   */
  async indexClaims(ns: string, ids?: readonly string[]): Promise<number> {
    const all = ids ?? (await this.redis.smembers(keys.containers(ns)));
    if (all.length === 0) return 0;
    const p = this.redis.pipeline();
    for (const id of all) p.hget(keys.container(ns, id), CHAIN_CLAIM_FIELD);
    const index = this.redis.pipeline();
    let claims = 0;
    ((await p.exec()) ?? []).forEach(([err, v], i) => {
      if (err) throw err;
      const id = all[i];
      if (typeof v !== 'string' || id === undefined) return;
      const { node } = JSON.parse(v) as ChainClaim;
      const args = [keys.container(ns, id), keys.chainClaims(node), claimMember(ns, id), v];
      index.eval(INDEX_CLAIM, 2, ...args);
      claims++;
    });
    if (claims === 0) return 0;
    let added = 0;
    for (const [err, n] of (await index.exec()) ?? []) {
      if (err) throw err;
      if (n === 1) added++;
    }
    return added;
  }

  /**
   * Adds the rootfs mounts to a record createNamed stored (`stored`, as it stored it) and drops
   * its chain claim, with the lock released in the same round trip: false when the record changed
   * or went meanwhile, or the lock was lost (then nothing is written).
   */
  async addRootfsAndRelease(stored: Container, rootfs: Mount[], lock: Lock): Promise<boolean> {
    const tx = this.redis
      .multi()
      .eval(
        ADD_ROOTFS,
        2,
        lock.key,
        keys.container(stored.namespace, stored.id),
        lock.token,
        JSON.stringify(stored),
        JSON.stringify({ ...stored, rootfs }),
        keys.chainClaims(''),
        claimMember(stored.namespace, stored.id),
      );
    const [err, added] = (await execReleasing(tx, lock))[0] ?? [null, 0];
    if (err && !isFenced(err)) throw err;
    return added === 1;
  }

  /**
   * The new record stored and its creation's intent forgotten, in one transaction, with the
   * container's lock released in it (see Lock.commitAndRelease).
   */
  async commitCreate(c: Container, lock: Lock): Promise<void> {
    const tx = this.putIn(this.redis.multi(), c).hdel(keys.containersCreating(c.namespace), c.id);
    await execReleasing(tx, lock);
  }

  /** Releases a name if it still points at `id`. */
  async releaseName(ns: string, name: string, id: string): Promise<void> {
    await this.redis.eval(RELEASE_NAME, 1, keys.containerName(ns, name), id);
  }

  /** Stores (creates or replaces) a container record. */
  async put(c: Container): Promise<void> {
    await this.putIn(this.redis.multi(), c).exec();
  }

  /** put() with the container's lock released in the same transaction (see Lock.commitAndRelease). */
  async putAndRelease(c: Container, lock: Lock): Promise<void> {
    const tx = this.putIn(this.redis.multi(), c);
    await execReleasing(tx, lock);
  }

  /** Adds the writes of put() to a transaction. */
  putIn(tx: ChainableCommander, c: Container): ChainableCommander {
    return tx
      .hset(keys.container(c.namespace, c.id), {
        data: JSON.stringify(c),
        name: c.name,
        createdAt: c.createdAt,
      })
      .sadd(keys.containers(c.namespace), c.id);
  }

  /** The container with this exact id, or undefined. */
  async get(ns: string, id: string): Promise<Container | undefined> {
    const data = await this.redis.hget(keys.container(ns, id), 'data');
    return data ? (JSON.parse(data) as Container) : undefined;
  }

  /** Finds a container by full id, name, or unique id prefix; NOT_FOUND or INVALID_ARGUMENT (ambiguous). */
  async resolve(ns: string, ref: string): Promise<Container> {
    if (CONTAINER_ID_PATTERN.test(ref)) {
      const c = await this.get(ns, ref);
      if (c) return c;
    }
    const byName = await this.redis.get(keys.containerName(ns, ref));
    if (byName) {
      const c = await this.get(ns, byName);
      if (c) return c;
    }
    if (/^[a-f0-9]{1,63}$/.test(ref)) {
      const ids = (await this.redis.smembers(keys.containers(ns))).filter((id) => id.startsWith(ref));
      if (ids.length > 1) {
        throw errors.invalid(
          `container id prefix "${ref}" is ambiguous: it matches ${ids.length} containers`,
        );
      }
      if (ids[0]) {
        const c = await this.get(ns, ids[0]);
        if (c) return c;
      }
    }
    throw errors.notFound(`container "${ref}" not found`);
  }

  /** Every container of a namespace with its task, newest first. */
  async list(ns: string): Promise<ContainerInfo[]> {
    const out: ContainerInfo[] = [];
    for await (const i of this.scan(ns, await this.order(ns))) out.push(i);
    return out;
  }

  /**
   * The containers of a namespace in listing order, newest first (ties by id, descending), as
   * positions only: the creation time is a field of its own beside the record, so ordering
   * thousands of containers reads a few bytes of each.
   */
  async order(ns: string): Promise<ListPosition[]> {
    const ids = await this.redis.smembers(keys.containers(ns));
    if (ids.length === 0) return [];
    const p = this.redis.pipeline();
    for (const id of ids) p.hget(keys.container(ns, id), 'createdAt');
    const res = (await p.exec()) ?? [];
    const out: ListPosition[] = [];
    ids.forEach((id, i) => {
      const createdAt = res[i]?.[1] as string | null;
      if (createdAt !== null && createdAt !== undefined) out.push({ createdAt, id });
    });
    return out.sort((a, b) => -comparePositions(a, b));
  }

  /**
   * The containers at these positions with their tasks, in their order, read in batches so a
   * page is filled without reading the rest of the namespace. Records removed meanwhile are skipped.
   */
  async *scan(ns: string, positions: readonly ListPosition[], batch = 64): AsyncGenerator<ContainerInfo> {
    for (let at = 0; at < positions.length; at += batch) {
      const ids = positions.slice(at, at + batch).map((x) => x.id);
      const p = this.redis.pipeline();
      for (const id of ids) {
        p.hget(keys.container(ns, id), 'data');
        p.hgetall(keys.task(ns, id));
      }
      const res = (await p.exec()) ?? [];
      for (let i = 0; i < ids.length; i++) {
        const data = res[2 * i]?.[1] as string | null;
        if (!data) continue;
        const task = decodeTask(res[2 * i + 1]?.[1] as Record<string, string>);
        yield info(JSON.parse(data) as Container, task);
      }
    }
  }

  /** A container with its task. */
  async info(c: Container): Promise<ContainerInfo> {
    return info(c, await this.getTask(c.namespace, c.id));
  }

  /** Removes a container, its task record, its name and its chain claim, atomically. */
  async delete(c: Container): Promise<void> {
    await this.redis
      .multi()
      .srem(keys.chainClaims(c.node), claimMember(c.namespace, c.id))
      .del(keys.container(c.namespace, c.id), keys.task(c.namespace, c.id))
      .srem(keys.containers(c.namespace), c.id)
      .eval(RELEASE_NAME, 1, keys.containerName(c.namespace, c.name), c.id)
      .exec();
  }

  /**
   * Removes a container's record, task, name and chain claim and, in the same transaction, keeps
   * the record as one whose node resources are still to be freed (see ContainerManager.collect):
   * from here on it is gone for every reader, and nothing it held on its node can be forgotten.
   */
  async deleteForCollection(c: Container, lock?: Lock): Promise<void> {
    const tx = this.redis
      .multi()
      .hset(keys.containersCollecting(c.namespace), c.id, JSON.stringify(c))
      .srem(keys.chainClaims(c.node), claimMember(c.namespace, c.id))
      .del(keys.container(c.namespace, c.id), keys.task(c.namespace, c.id))
      .srem(keys.containers(c.namespace), c.id)
      .eval(RELEASE_NAME, 1, keys.containerName(c.namespace, c.name), c.id);
    // With the container's lock: released in the same transaction (see Lock.commitAndRelease).
    await execReleasing(tx, lock);
  }

  /**
   * deleteForCollection() of a container with no live task, checked and done in one step while
   * nobody holds its lock (see REMOVE_DONE): the record and task it removed, or undefined when
   * it did nothing (locked, gone, or a live task), for the caller's locked path to decide.
   */
  async removeIfDone(ns: string, id: string): Promise<{ c: Container; task: Task | undefined } | undefined> {
    const r = (await this.redis.eval(
      REMOVE_DONE,
      5,
      keys.containerLock(ns, id),
      keys.container(ns, id),
      keys.task(ns, id),
      keys.containers(ns),
      keys.containersCollecting(ns),
      id,
      keys.containerName(ns, ''),
      keys.chainClaims(''),
      claimMember(ns, id),
    )) as string[];
    if (r[0] !== 'removed') return undefined;
    const fields: Record<string, string> = {};
    for (let i = 2; i + 1 < r.length; i += 2) fields[r[i] as string] = r[i + 1] as string;
    return { c: JSON.parse(r[1] as string) as Container, task: decodeTask(fields) };
  }

  /** Containers of a namespace removed whose node resources are not yet all freed. */
  async collecting(ns: string): Promise<Container[]> {
    const all = await this.redis.hvals(keys.containersCollecting(ns));
    return all.map((v) => JSON.parse(v) as Container);
  }

  /** Everything the removed container held is freed: forget it. */
  async endCollect(ns: string, id: string): Promise<void> {
    await this.redis.hdel(keys.containersCollecting(ns), id);
  }

  /** The creation finished (the record is stored) or was undone. */
  async endCreate(ns: string, id: string): Promise<void> {
    await this.redis.hdel(keys.containersCreating(ns), id);
  }

  /** Creations of a namespace not yet finished or undone. */
  async creating(ns: string): Promise<CreateIntent[]> {
    const all = await this.redis.hvals(keys.containersCreating(ns));
    return all.map((v) => JSON.parse(v) as CreateIntent);
  }

  /** Marks a container as being removed: no new task, and the reconcile finishes a failed removal. */
  async markRemoving(ns: string, id: string): Promise<void> {
    await this.redis.eval(MARK_REMOVING, 1, keys.container(ns, id), new Date().toISOString());
  }

  /** Drops the removing mark (a removal that lost a race with a new task). */
  async unmarkRemoving(ns: string, id: string): Promise<void> {
    await this.redis.hdel(keys.container(ns, id), 'removing');
  }

  /** True when a removal of the container began (and has not finished). */
  async isRemoving(ns: string, id: string): Promise<boolean> {
    return (await this.redis.hexists(keys.container(ns, id), 'removing')) === 1;
  }

  /**
   * The records of the containers of a namespace whose removal began and did not finish (the
   * reconcile's back-off tells their versions apart, see FreeRetries).
   */
  async removing(ns: string): Promise<Container[]> {
    const ids = await this.redis.smembers(keys.containers(ns));
    if (ids.length === 0) return [];
    const p = this.redis.pipeline();
    for (const id of ids) p.hmget(keys.container(ns, id), 'data', 'removing');
    const res = (await p.exec()) ?? [];
    const out: Container[] = [];
    for (const r of res) {
      const [data, removing] = (r?.[1] as (string | null)[] | undefined) ?? [];
      if (data && removing !== null && removing !== undefined) out.push(JSON.parse(data) as Container);
    }
    return out;
  }

  /** Namespaces that have (or had) containers, or creations or collections under way. */
  async namespaces(): Promise<string[]> {
    return [
      ...new Set([
        ...(await this.scanNamespaces(keys.containers('*'))),
        ...(await this.scanNamespaces(keys.containersCreating('*'))),
        ...(await this.scanNamespaces(keys.containersCollecting('*'))),
      ]),
    ];
  }

  private async scanNamespaces(pattern: string): Promise<string[]> {
    const prefix = pattern.slice(0, pattern.indexOf('*'));
    const suffix = pattern.slice(pattern.indexOf('*') + 1);
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
      cursor = next;
      for (const k of batch) out.push(k.slice(prefix.length, k.length - suffix.length));
    } while (cursor !== '0');
    return [...new Set(out)];
  }

  /** Writes a fresh task record (replacing a previous run's). */
  async putTask(t: Task): Promise<void> {
    await this.putTaskIn(this.redis.multi(), t).exec();
  }

  /** Adds the writes of putTask() to a transaction. */
  private putTaskIn(tx: ChainableCommander, t: Task): ChainableCommander {
    const k = keys.task(t.namespace, t.id);
    const fields: Record<string, string> = {};
    for (const [f, v] of Object.entries(t)) if (v !== undefined) fields[f] = String(v);
    return tx.del(k).hset(k, fields);
  }

  /**
   * A new task's record (and its container's, when the create changed it) stored in one
   * transaction, with the container's lock released in it (see Lock.commitAndRelease).
   */
  async commitTask(t: Task, lock: Lock, container?: Container): Promise<void> {
    const tx = this.putTaskIn(container ? this.putIn(this.redis.multi(), container) : this.redis.multi(), t);
    await execReleasing(tx, lock);
  }

  /**
   * A container as a write under its lock checks it, read in one round trip: its record
   * (undefined when gone), whether its removal began, and its task.
   */
  async current(
    ns: string,
    id: string,
  ): Promise<{ c: Container | undefined; removing: boolean; task: Task | undefined }> {
    const res =
      (await this.redis
        .pipeline()
        .hmget(keys.container(ns, id), 'data', 'removing')
        .hgetall(keys.task(ns, id))
        .exec()) ?? [];
    for (const [err] of res) if (err) throw err;
    const [data, removing] = (res[0]?.[1] as (string | null)[] | undefined) ?? [];
    return {
      c: data ? (JSON.parse(data) as Container) : undefined,
      removing: removing !== null && removing !== undefined,
      task: decodeTask(res[1]?.[1] as Record<string, string> | undefined),
    };
  }

  async getTask(ns: string, id: string): Promise<Task | undefined> {
    return decodeTask(await this.redis.hgetall(keys.task(ns, id)));
  }

  async deleteTask(ns: string, id: string): Promise<void> {
    await this.redis.del(keys.task(ns, id));
  }

  /** Sets fields of a task unless it already stopped; false when it had. */
  async setTaskFields(ns: string, id: string, fields: Record<string, string | number>): Promise<boolean> {
    const argv = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
    return (await this.redis.eval(SET_STATUS, 1, keys.task(ns, id), ...argv)) === 1;
  }

  /** Records an exit once; false when it was already recorded or belongs to another run. */
  async recordExit(
    e: Pick<TaskExit, 'namespace' | 'id' | 'pid' | 'exitCode' | 'exitedAt' | 'reason'>,
  ): Promise<boolean> {
    const r = await this.redis.eval(
      RECORD_EXIT,
      1,
      keys.task(e.namespace, e.id),
      String(e.pid),
      String(e.exitCode),
      e.exitedAt,
      exitReason(e.exitCode, e.reason),
    );
    return r === 1;
  }
}

/** A record's claim on its image's chain (the CHAIN_CLAIM_FIELD of its hash). */
interface ChainClaim {
  node: string;
  chainId: string;
}

/** A container's entry in its node's index of chain claims (keys.chainClaims). */
function claimMember(ns: string, id: string): string {
  return `${ns}/${id}`;
}

function decodeTask(h: Record<string, string> | null | undefined): Task | undefined {
  if (!h?.id) return undefined;
  const t: Task = {
    id: h.id,
    namespace: h.namespace ?? '',
    node: h.node ?? '',
    status: (h.status ?? 'unknown') as Task['status'],
    pid: Number(h.pid ?? 0),
    createdAt: h.createdAt ?? '',
  };
  if (h.exitCode !== undefined) t.exitCode = Number(h.exitCode);
  if (h.exitedAt) t.exitedAt = h.exitedAt;
  if (h.reason) t.reason = h.reason;
  if (h.logPath) t.logPath = h.logPath;
  if (h.startedAt) t.startedAt = h.startedAt;
  if (h.attachPath) t.attachPath = h.attachPath;
  if (h.ctlPath) t.ctlPath = h.ctlPath;
  return t;
}

function info(container: Container, task: Task | undefined): ContainerInfo {
  const status: ContainerStatus = task ? task.status : 'created';
  return task ? { container, task, status } : { container, status };
}

/** ALREADY_EXISTS for a caller's id another container holds (stored, being created or freed). */
function idInUse(id: string): BerthError {
  return errors.exists(`container id ${id} is already in use by another container`);
}

/** ALREADY_EXISTS for a name `holder` (a container id, or anything else when unknown) holds. */
function nameInUse(name: string, holder: unknown): BerthError {
  const by = typeof holder === 'string' ? holder.slice(0, 12) : '?';
  return errors.exists(`container name "${name}" is already in use by container ${by}`);
}

/**
 * Execs `tx`, with the lock's release as its last command when the lock offers that
 * (Lock.commitAndRelease: withLock then has nothing left to release); the transaction's replies.
 */
async function execReleasing(
  tx: ChainableCommander,
  lock: Lock | undefined,
): Promise<[Error | null, unknown][]> {
  return lock?.commitAndRelease ? lock.commitAndRelease(tx) : ((await tx.exec()) ?? []);
}
