import { randomUUID } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  type CommitSnapshotRequest,
  type ListSnapshotsRequest,
  type Mount,
  type PrepareRequest,
  type SnapshotInfo,
  SnapshotKind,
  type UpdateSnapshotRequest,
} from '@berth/api';
import { decodeCursor, diskError, type Fence, fillPage, type Page, type Redis } from '@berth/kit';
import { compileFilters } from './filters.js';
import { mountsFor } from './mounts.js';
import { infoOf, type SnapshotRecord, SnapshotStore, StaleCreate } from './store.js';
import { diskUsage, type Usage, walkUsage } from './usage.js';
import { USAGE_REFRESH_MS, USAGE_WALKS, UsageCache } from './usage-cache.js';

/** A pending id whose creator has not finished within this long is treated as crashed. */
const PENDING_STALE_MS = 60 * 60 * 1000;

/** How long a spare id (allocated by one create for the next) may wait to be used. */
const SPARE_MAX_AGE_MS = 10 * 60 * 1000;

/** How many parent chains a snapshotter keeps (see Snapshotter.chains); each is a few records. */
const CHAINS_MAX = 256;

/** Options of a Snapshotter beyond its Redis, node and root. */
export interface SnapshotterOptions {
  /**
   * Serves active snapshots' usage (see usage); default: one walking with walkUsage every
   * USAGE_REFRESH_MS, USAGE_WALKS at a time. The snapshotter closes it (close).
   */
  usage?: UsageCache;
}

/** A snapshot's usage as `usage` answers it: measuredAt (RFC 3339) for figures that can age. */
export type SnapshotUsage = Usage & { measuredAt?: string };

/** A snapshot that was just created, with what an unpacker needs to write into it. */
export interface Created {
  record: SnapshotRecord;
  /** Its fs directory (the overlay upperdir). */
  fs: string;
  /** fs directories of its parents, nearest first. */
  parentFs: string[];
  mounts: Mount[];
}

/**
 * containerd's overlay snapshotter over Redis metadata: snapshots/<id>/fs (+ work for active ones)
 * under the state root, created under new-<id>-<rand> and renamed into place, removed by renaming
 * to rm-<id> first. Metadata changes are single Lua scripts (see store.ts).
 */
export class Snapshotter {
  readonly store: SnapshotStore;
  /**
   * Committed parent chains (nearest first) by the parent's name, as this process last read them.
   * A committed record never changes its id or parent, and one with children cannot be removed,
   * so a parent with the id read then has the same chain: the create script checks that id.
   */
  private readonly chains = new Map<string, SnapshotRecord[]>();
  /** A pending id allocated for the next create, and when (see takeId). */
  private spare: { id: Promise<string>; at: number } | undefined;
  /** Active snapshots' usage, by id, refreshed in the background (see usage). */
  readonly usageCache: UsageCache;

  constructor(
    readonly redis: Redis,
    readonly node: string,
    readonly root: string,
    opts: SnapshotterOptions = {},
  ) {
    this.store = new SnapshotStore(redis, node);
    this.usageCache =
      opts.usage ?? new UsageCache({ walk: walkUsage, periodMs: USAGE_REFRESH_MS, concurrency: USAGE_WALKS });
  }

  /** Stops the usage cache's refresh (its timer) and waits for walks still running. */
  close(): Promise<void> {
    return this.usageCache.close();
  }

  fsDir(id: string): string {
    return join(this.root, id, 'fs');
  }

  workDir(id: string): string {
    return join(this.root, id, 'work');
  }

  /** The chain of committed parents of a snapshot, nearest first. */
  async parents(r: SnapshotRecord): Promise<SnapshotRecord[]> {
    const out: SnapshotRecord[] = [];
    let p = r.parent;
    while (p) {
      const pr = await this.store.get(p);
      if (!pr)
        throw new BerthError(Code.INTERNAL, `snapshot "${r.name}": parent "${p}" is missing from the store`);
      out.push(pr);
      if (out.length > 4096)
        throw new BerthError(Code.INTERNAL, `snapshot "${r.name}": parent chain too long`);
      p = pr.parent;
    }
    return out;
  }

  /** prepare: a new active snapshot on top of a committed parent. */
  async prepare(req: PrepareRequest): Promise<Mount[]> {
    return (await this.create(SnapshotKind.active, req)).mounts;
  }

  /** view: a read-only snapshot of a committed parent. */
  async view(req: PrepareRequest): Promise<Mount[]> {
    return (await this.create(SnapshotKind.view, req)).mounts;
  }

  /**
   * Creates an active or view snapshot: directory first (under a temp name), then metadata. On a
   * parent chain this process has read before (see chains) and with a spare id (see takeId), the
   * directory is made at once and the one Redis round trip is the create script, which checks
   * that the parent is still the record read then (its id) and the key free, and allocates the
   * next create's spare id beside it. Otherwise the key and the parents are read first, beside
   * the id's allocation.
   */
  async create(kind: SnapshotKind, req: PrepareRequest): Promise<Created> {
    const known = req.parent ? this.chains.get(req.parent) : [];
    // A create refused because its parent was removed (and maybe made again) after it was read,
    // from the cache or just now, starts over once from fresh reads: NOT_FOUND when the parent is
    // gone, a snapshot on the new one, ABORTED when it changes under the second try too.
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt === 0 && known) return await this.build(kind, req, await this.takeId(), known);
        return await this.createFromReads(kind, req);
      } catch (err) {
        if (req.parent) this.chains.delete(req.parent);
        if (!(err instanceof StaleCreate) || attempt > 0) throw err;
      }
    }
  }

  /** create() on the key and the parents read first, beside the id's allocation. */
  private async createFromReads(kind: SnapshotKind, req: PrepareRequest): Promise<Created> {
    // A request refused below gives its id back; until then the id is pending, which cleanup spares.
    const allocating = this.takeId();
    let parents: SnapshotRecord[] = [];
    try {
      const [existing, parent] = await Promise.all([
        this.store.get(req.key),
        req.parent ? this.store.get(req.parent) : undefined,
      ]);
      if (existing) throw new BerthError(Code.ALREADY_EXISTS, `snapshot "${req.key}" already exists`);
      if (req.parent) {
        if (!parent) throw new BerthError(Code.NOT_FOUND, `parent snapshot "${req.parent}" not found`);
        if (parent.kind !== SnapshotKind.committed) {
          throw new BerthError(Code.FAILED_PRECONDITION, `parent snapshot "${req.parent}" is not committed`);
        }
        parents = [parent, ...(await this.parents(parent))];
        this.remember(req.parent, parents);
      }
    } catch (err) {
      await allocating.then((id) => this.store.release(id)).catch(() => undefined);
      throw err;
    }
    return this.build(kind, req, await allocating, parents);
  }

  /**
   * The directory id of a new snapshot, pending: the spare a create allocated beside its script
   * when there is one young enough, else one allocated now (a round trip). A spare older than
   * SPARE_MAX_AGE_MS is given back, so cleanup (which takes back ids pending past
   * PENDING_STALE_MS) never takes one from under a create.
   */
  private takeId(): Promise<string> {
    const spare = this.spare;
    this.spare = undefined;
    if (spare && Date.now() - spare.at < SPARE_MAX_AGE_MS) return spare.id.catch(() => this.store.allocate());
    if (spare) spare.id.then((id) => this.store.release(id)).catch(() => undefined);
    return this.store.allocate();
  }

  /** Keeps a committed parent's chain (nearest first) for the next create on it (see create). */
  private remember(name: string, chain: SnapshotRecord[]): void {
    this.chains.delete(name);
    this.chains.set(name, chain);
    if (this.chains.size > CHAINS_MAX) {
      const oldest = this.chains.keys().next().value;
      if (oldest !== undefined) this.chains.delete(oldest);
    }
  }

  /** Makes the directory of pending id `id` on `parents` (nearest first), then records it. */
  private async build(
    kind: SnapshotKind,
    req: PrepareRequest,
    id: string,
    parents: SnapshotRecord[],
  ): Promise<Created> {
    const tmp = join(this.root, `new-${id}-${randomUUID().slice(0, 8)}`);
    const dir = join(this.root, id);
    const top = parents[0];
    try {
      // One level at a time: a recursive mkdir that cannot create a parent (ENOSPC) reports the
      // child's ENOENT, which would hide a full disk.
      // These few calls on one new directory take microseconds each in the kernel, less than a
      // trip through libuv's thread pool and back costs (0.2-0.4 ms apiece on a loaded node,
      // bench/cri-trace.ts): made inline, they hold the event loop for less than one such trip.
      mkdirSync(this.root, { recursive: true, mode: 0o755 });
      mkdirSync(tmp, { mode: 0o755 });
      mkdirSync(join(tmp, 'fs'), { mode: 0o755 });
      if (kind === SnapshotKind.active) mkdirSync(join(tmp, 'work'), { mode: 0o700 });
      if (top) {
        // The upper's root takes the owner of the parent's root, as containerd does.
        const st = statSync(this.fsDir(top.id));
        chownSync(join(tmp, 'fs'), st.uid, st.gid);
      }
      renameSync(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      await this.store.release(id).catch(() => undefined);
      // The parent read before (maybe by an earlier create) was removed meanwhile.
      if (top && (err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(this.fsDir(top.id))) {
        throw new StaleCreate(`snapshot "${req.key}": the directory of parent "${req.parent}" is gone`);
      }
      const full = diskError(err, { what: `snapshot "${req.key}"`, path: tmp, after: 'nothing was created' });
      if (full) throw full;
      throw new BerthError(
        Code.INTERNAL,
        `cannot create the directory of snapshot "${req.key}": ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    let record: SnapshotRecord;
    try {
      const rec = { name: req.key, id, kind, labels: req.labels ?? {} } as const;
      // The record as stored comes back with the write: no read after it.
      const recording = this.store.create(
        req.parent && top ? { ...rec, parent: { name: req.parent, id: top.id } } : rec,
      );
      // The next create's id goes out in the same write as the script: no round trip of its own.
      if (!this.spare) {
        const next = this.store.allocate();
        next.catch(() => undefined);
        this.spare = { id: next, at: Date.now() };
      }
      record = await recording;
    } catch (err) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      await this.store.release(id).catch(() => undefined);
      throw err;
    }
    const parentFs = parents.map((p) => this.fsDir(p.id));
    return {
      record,
      fs: this.fsDir(id),
      parentFs,
      mounts: mountsFor({ kind, fs: this.fsDir(id), work: this.workDir(id), parentFs }),
    };
  }

  /** mounts: how to mount an active or view snapshot. */
  async mounts(key: string): Promise<Mount[]> {
    const r = await this.store.must(key);
    if (r.kind === SnapshotKind.committed) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `snapshot "${key}" is committed: only active and view snapshots have mounts`,
      );
    }
    const parentFs = (await this.parents(r)).map((p) => this.fsDir(p.id));
    return mountsFor({ kind: r.kind, fs: this.fsDir(r.id), work: this.workDir(r.id), parentFs });
  }

  /**
   * commit: the active snapshot `key` becomes committed `name`, its disk usage recorded from a
   * walk made now (never the cached figure), which `usage` answers from then on. With
   * `fence` (an unpack's lock) the record changes only while that lock is held (see store.ts).
   */
  async commit(req: CommitSnapshotRequest, fence?: Fence): Promise<SnapshotInfo> {
    const r = await this.store.must(req.key);
    if (r.kind !== SnapshotKind.active) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `snapshot "${req.key}" is not active: only active snapshots can be committed`,
      );
    }
    if (await this.store.get(req.name))
      throw new BerthError(Code.ALREADY_EXISTS, `snapshot "${req.name}" already exists`);
    const usage = await diskUsage(this.fsDir(r.id));
    await this.store.commit(req.key, req.name, req.labels ?? r.labels, usage, fence);
    this.usageCache.drop(r.id);
    return infoOf(await this.store.must(req.name));
  }

  /** remove: metadata first (refused while children exist), then the directory. */
  async remove(key: string): Promise<void> {
    const id = await this.store.remove(key);
    this.chains.delete(key);
    this.usageCache.drop(id);
    const dir = join(this.root, id);
    const doomed = join(this.root, `rm-${id}`);
    try {
      await rename(dir, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  async stat(key: string): Promise<SnapshotInfo> {
    return infoOf(await this.store.must(key));
  }

  /** update: replace labels, or with fieldpaths set/delete only the named ones. */
  async update(req: UpdateSnapshotRequest): Promise<SnapshotInfo> {
    const r = await this.store.must(req.key);
    let labels = req.labels;
    if (req.fieldpaths && req.fieldpaths.length > 0) {
      labels = { ...r.labels };
      for (const fp of req.fieldpaths) {
        if (fp === 'labels') {
          labels = { ...req.labels };
          continue;
        }
        if (!fp.startsWith('labels.')) {
          throw new BerthError(
            Code.INVALID_ARGUMENT,
            `cannot update field "${fp}" of snapshot "${req.key}": only labels`,
          );
        }
        const k = fp.slice('labels.'.length);
        const v = req.labels[k];
        if (v === undefined) delete labels[k];
        else labels[k] = v;
      }
    }
    await this.store.setLabels(req.key, labels);
    return infoOf(await this.store.must(req.key));
  }

  /**
   * One page of the snapshots matching the filters, by name (code-point order); the cursor is the
   * last name sent, so snapshots made or removed between pages shift nothing.
   */
  async list(req: ListSnapshotsRequest = {}): Promise<Page<SnapshotInfo>> {
    const match = compileFilters(req.filters);
    const after = req.cursor === undefined ? undefined : decodeCursor(req.cursor, 1, 'snapshot list')[0];
    const all = (await this.store.all())
      .map(infoOf)
      .filter((i) => (after === undefined || i.name > after) && match(i))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return fillPage(all, { limit: req.limit, keyOf: (i) => [i.name] });
  }

  /**
   * usage: the snapshot's own directory (parents excluded). Committed: measured at commit. Active:
   * from usageCache (kubelet asks for every container every ~10 s; a walk of 20,000 files takes
   * ~50 ms of disk), up to one refresh period old, as measuredAt says; `fresh` walks now instead.
   * View: its directory is empty under a read-only mount, walked each time.
   */
  async usage(key: string, opts: { fresh?: boolean } = {}): Promise<SnapshotUsage> {
    const r = await this.store.must(key);
    if (r.kind === SnapshotKind.committed && r.size !== undefined && r.inodes !== undefined) {
      return { size: r.size, inodes: r.inodes };
    }
    if (r.kind !== SnapshotKind.active) return diskUsage(this.fsDir(r.id));
    const dir = this.fsDir(r.id);
    try {
      const m = await (opts.fresh ? this.usageCache.fresh(r.id, dir) : this.usageCache.cached(r.id, dir));
      return { size: m.size, inodes: m.inodes, measuredAt: new Date(m.measuredAt).toISOString() };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Removed (maybe by another replica) between the read and the walk.
      throw new BerthError(Code.NOT_FOUND, `snapshot "${key}" not found: its directory ${dir} is gone`, {
        cause: err,
      });
    }
  }

  /**
   * cleanup: removes directories no snapshot references (left by a crash between creating a
   * directory and recording it, or between forgetting a snapshot and deleting it). Ids still
   * being created, and ids allocated after the state was read, are spared; a pending id stale
   * and without a directory is taken back.
   */
  async cleanup(): Promise<string[]> {
    const state = await this.store.idState();
    const now = Date.now();
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const removed: string[] = [];
    for (const n of names) {
      const m = /^(?:(new|rm)-)?(\d+)(?:-.*)?$/.exec(n);
      if (!m) continue;
      const id = m[2] as string;
      if (m[1] !== 'rm') {
        if (Number(id) > state.seq) continue;
        if (state.ids.has(id) && m[1] === undefined) continue;
        const started = state.pending.get(id);
        if (started !== undefined && now - started < PENDING_STALE_MS) continue;
      }
      await rm(join(this.root, n), { recursive: true, force: true });
      if (state.pending.has(id)) await this.store.release(id);
      removed.push(n);
    }
    // A stale pending id with nothing on disk (its creator died before making the directory, or
    // a replica stopped holding a spare id) is taken back too.
    const onDisk = new Set(names.map((n) => /^(?:(?:new|rm)-)?(\d+)/.exec(n)?.[1]));
    for (const [id, started] of state.pending) {
      if (now - started >= PENDING_STALE_MS && !onDisk.has(id)) await this.store.release(id);
    }
    return removed;
  }
}
