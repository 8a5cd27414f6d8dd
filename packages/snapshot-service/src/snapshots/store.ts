import { BerthError, Code, type SnapshotInfo, type SnapshotKind } from '@berth/api';
import { type Fence, fencedError, keys, type Redis, redisScript } from '@berth/kit';

/** A snapshot's metadata as kept in Redis (hash keys.snapshot(node, name)). */
export interface SnapshotRecord {
  name: string;
  /** Directory id under the snapshots root (a decimal number from keys.snapshotSeq). */
  id: string;
  kind: SnapshotKind;
  parent: string | undefined;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  /** Disk usage measured at commit (committed snapshots only). */
  size: number | undefined;
  inodes: number | undefined;
}

/** The public view of a record. */
export function infoOf(r: SnapshotRecord): SnapshotInfo {
  const info: SnapshotInfo = {
    name: r.name,
    kind: r.kind,
    labels: r.labels,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
  if (r.parent) info.parent = r.parent;
  return info;
}

// Every change below is one Lua script, so a snapshot, the set of all snapshots and the parent's
// children set never disagree, whatever runs concurrently (several replicas on one node included).
const ALLOC = redisScript(
  'snapshot alloc',
  `
local id = redis.call('incr', KEYS[1])
redis.call('zadd', KEYS[2], ARGV[1], id)
return id`,
);

// The parent must still be the record the caller built its directory and mounts on (ARGV[7], its
// directory id): one removed and made again under the same name has another id. And the new
// snapshot's id must still be pending: one cleanup took back (its creator too slow) is not used.
const CREATE = redisScript(
  'snapshot create',
  `
if redis.call('exists', KEYS[1]) == 1 then return redis.error_reply('ALREADY_EXISTS') end
if not redis.call('zscore', KEYS[5], ARGV[2]) then return redis.error_reply('ID_NOT_PENDING') end
if ARGV[4] ~= '' then
  local p = redis.call('hmget', KEYS[3], 'kind', 'id')
  if not p[1] then return redis.error_reply('PARENT_NOT_FOUND') end
  if p[1] ~= 'committed' then return redis.error_reply('PARENT_NOT_COMMITTED') end
  if p[2] ~= ARGV[7] then return redis.error_reply('PARENT_CHANGED') end
  redis.call('sadd', KEYS[4], ARGV[1])
end
redis.call('hset', KEYS[1], 'name', ARGV[1], 'id', ARGV[2], 'kind', ARGV[3], 'parent', ARGV[4],
  'labels', ARGV[5], 'createdAt', ARGV[6], 'updatedAt', ARGV[6])
redis.call('sadd', KEYS[2], ARGV[1])
redis.call('zrem', KEYS[5], ARGV[2])
return redis.call('hgetall', KEYS[1])`,
);

// KEYS[4]/ARGV[8], when given, are a lock and its holder's token (an unpack's chainID lock): the
// commit happens only while that lock is still held, checked in this same script.
const COMMIT = redisScript(
  'snapshot commit',
  `
if #KEYS >= 4 and redis.call('get', KEYS[4]) ~= ARGV[8] then return redis.error_reply('FENCED') end
local kind = redis.call('hget', KEYS[1], 'kind')
if not kind then return redis.error_reply('NOT_FOUND') end
if kind ~= 'active' then return redis.error_reply('NOT_ACTIVE') end
if redis.call('exists', KEYS[2]) == 1 then return redis.error_reply('ALREADY_EXISTS') end
local f = redis.call('hmget', KEYS[1], 'id', 'parent', 'createdAt')
redis.call('hset', KEYS[2], 'name', ARGV[2], 'id', f[1], 'kind', 'committed', 'parent', f[2],
  'labels', ARGV[3], 'createdAt', ARGV[4], 'updatedAt', ARGV[4], 'size', ARGV[5], 'inodes', ARGV[6])
redis.call('del', KEYS[1])
redis.call('srem', KEYS[3], ARGV[1])
redis.call('sadd', KEYS[3], ARGV[2])
if f[2] ~= '' then
  local ck = ARGV[7] .. f[2]
  redis.call('srem', ck, ARGV[1])
  redis.call('sadd', ck, ARGV[2])
end
return f[1]`,
);

const REMOVE = redisScript(
  'snapshot remove',
  `
local f = redis.call('hmget', KEYS[1], 'id', 'parent')
if not f[1] then return redis.error_reply('NOT_FOUND') end
if redis.call('scard', KEYS[2]) > 0 then return redis.error_reply('HAS_CHILDREN') end
redis.call('del', KEYS[1], KEYS[2])
redis.call('srem', KEYS[3], ARGV[1])
if f[2] ~= '' then redis.call('srem', ARGV[2] .. f[2], ARGV[1]) end
return f[1]`,
);

const UPDATE = redisScript(
  'snapshot update',
  `
if redis.call('exists', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
redis.call('hset', KEYS[1], 'labels', ARGV[1], 'updatedAt', ARGV[2])
return 'OK'`,
);

const STATE = redisScript(
  'snapshot state',
  `
local names = redis.call('smembers', KEYS[1])
local ids = {}
for i, n in ipairs(names) do
  local id = redis.call('hget', ARGV[1] .. n, 'id')
  if id then table.insert(ids, id) end
end
local pending = redis.call('zrange', KEYS[2], 0, -1, 'WITHSCORES')
local seq = redis.call('get', KEYS[3]) or '0'
return {ids, pending, seq}`,
);

function replyCode(err: unknown): string | undefined {
  // Redis prefixes a script's error_reply with "ERR ".
  const m = (err as Error | undefined)?.message?.replace(/^ERR /, '');
  return m?.match(/^[A-Z_]+$/) ? m : undefined;
}

/**
 * A create refused because what it was built on changed meanwhile: its parent was made again
 * (another directory id) or its pending id was taken back. Nothing was recorded; the caller may
 * start over with a fresh read and id.
 */
export class StaleCreate extends BerthError {
  constructor(message: string) {
    super(Code.ABORTED, message);
  }
}

/** Snapshot metadata of one node in Redis, every change atomic. */
export class SnapshotStore {
  private readonly childPrefix: string;
  private readonly snapPrefix: string;

  constructor(
    private readonly redis: Redis,
    private readonly node: string,
  ) {
    this.childPrefix = keys.snapshotChildren(node, '');
    this.snapPrefix = keys.snapshot(node, '');
  }

  /** Allocates a directory id and marks it pending (so cleanup spares it until it is recorded). */
  async allocate(): Promise<string> {
    const id = await this.redis.eval(
      ALLOC,
      2,
      keys.snapshotSeq(this.node),
      keys.snapshotPending(this.node),
      Date.now(),
    );
    return String(id);
  }

  /** Drops a pending id whose creation failed. */
  async release(id: string): Promise<void> {
    await this.redis.zrem(keys.snapshotPending(this.node), id);
  }

  /**
   * Records a snapshot whose directory `id` (pending, from allocate) is made. With a parent, its
   * directory id as the caller read it: a parent that is gone or has another id now fails
   * NOT_FOUND or StaleCreate, and a pending id cleanup took back fails StaleCreate.
   */
  async create(r: {
    name: string;
    id: string;
    kind: SnapshotKind;
    parent?: { name: string; id: string };
    labels: Record<string, string>;
  }): Promise<SnapshotRecord> {
    const now = new Date().toISOString();
    const parent = r.parent?.name ?? '';
    let stored: unknown;
    try {
      stored = await this.redis.eval(
        CREATE,
        5,
        keys.snapshot(this.node, r.name),
        keys.snapshots(this.node),
        keys.snapshot(this.node, parent),
        keys.snapshotChildren(this.node, parent),
        keys.snapshotPending(this.node),
        r.name,
        r.id,
        r.kind,
        parent,
        JSON.stringify(r.labels),
        now,
        r.parent?.id ?? '',
      );
    } catch (err) {
      switch (replyCode(err)) {
        case 'ALREADY_EXISTS':
          throw new BerthError(Code.ALREADY_EXISTS, `snapshot "${r.name}" already exists`);
        case 'ID_NOT_PENDING':
          throw new StaleCreate(`snapshot "${r.name}": its directory id ${r.id} is no longer pending`);
        case 'PARENT_CHANGED':
          throw new StaleCreate(`snapshot "${r.name}": parent "${parent}" was removed and made again`);
        case 'PARENT_NOT_FOUND':
          throw new BerthError(Code.NOT_FOUND, `parent snapshot "${parent}" not found`);
        case 'PARENT_NOT_COMMITTED':
          throw new BerthError(Code.FAILED_PRECONDITION, `parent snapshot "${parent}" is not committed`);
      }
      throw err;
    }
    // The script answers the record it wrote (HGETALL's field, value list).
    const flat = stored as string[];
    const h: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) h[flat[i] as string] = flat[i + 1] as string;
    const rec = parseRecord(h);
    if (!rec) throw new BerthError(Code.INTERNAL, `snapshot "${r.name}": its record was not stored`);
    return rec;
  }

  async get(name: string): Promise<SnapshotRecord | undefined> {
    const h = await this.redis.hgetall(keys.snapshot(this.node, name));
    return parseRecord(h);
  }

  /** Like get, but NOT_FOUND when absent. */
  async must(name: string): Promise<SnapshotRecord> {
    const r = await this.get(name);
    if (!r) throw new BerthError(Code.NOT_FOUND, `snapshot "${name}" not found`);
    return r;
  }

  /**
   * Active `key` becomes committed `name`; returns the directory id. With `fence`, only while that
   * lock still holds the token (same script): else ABORTED and nothing changes.
   */
  async commit(
    key: string,
    name: string,
    labels: Record<string, string>,
    usage: { size: number; inodes: number },
    fence?: Fence,
  ): Promise<string> {
    const keysOf = [keys.snapshot(this.node, key), keys.snapshot(this.node, name), keys.snapshots(this.node)];
    if (fence) keysOf.push(fence.key);
    try {
      const id = await this.redis.eval(
        COMMIT,
        keysOf.length,
        ...keysOf,
        key,
        name,
        JSON.stringify(labels),
        new Date().toISOString(),
        usage.size,
        usage.inodes,
        this.childPrefix,
        fence?.token ?? '',
      );
      return String(id);
    } catch (err) {
      switch (replyCode(err)) {
        case 'FENCED':
          throw fencedError(`snapshot "${name}"`, err);
        case 'NOT_FOUND':
          throw new BerthError(Code.NOT_FOUND, `snapshot "${key}" not found`);
        case 'NOT_ACTIVE':
          throw new BerthError(
            Code.FAILED_PRECONDITION,
            `snapshot "${key}" is not active: only active snapshots can be committed`,
          );
        case 'ALREADY_EXISTS':
          throw new BerthError(Code.ALREADY_EXISTS, `snapshot "${name}" already exists`);
      }
      throw err;
    }
  }

  /** Deletes the metadata of `name`; refused while it has children. Returns the directory id. */
  async remove(name: string): Promise<string> {
    try {
      const id = await this.redis.eval(
        REMOVE,
        3,
        keys.snapshot(this.node, name),
        keys.snapshotChildren(this.node, name),
        keys.snapshots(this.node),
        name,
        this.childPrefix,
      );
      return String(id);
    } catch (err) {
      switch (replyCode(err)) {
        case 'NOT_FOUND':
          throw new BerthError(Code.NOT_FOUND, `snapshot "${name}" not found`);
        case 'HAS_CHILDREN': {
          const kids = await this.redis.smembers(keys.snapshotChildren(this.node, name));
          throw new BerthError(
            Code.FAILED_PRECONDITION,
            `snapshot "${name}" has ${kids.length} child snapshot(s) (${kids.slice(0, 3).join(', ')}): remove them first`,
          );
        }
      }
      throw err;
    }
  }

  async setLabels(name: string, labels: Record<string, string>): Promise<void> {
    try {
      await this.redis.eval(
        UPDATE,
        1,
        keys.snapshot(this.node, name),
        JSON.stringify(labels),
        new Date().toISOString(),
      );
    } catch (err) {
      if (replyCode(err) === 'NOT_FOUND')
        throw new BerthError(Code.NOT_FOUND, `snapshot "${name}" not found`);
      throw err;
    }
  }

  /** Every snapshot on the node. */
  async all(): Promise<SnapshotRecord[]> {
    const names = await this.redis.smembers(keys.snapshots(this.node));
    if (names.length === 0) return [];
    const m = this.redis.multi();
    for (const n of names) m.hgetall(keys.snapshot(this.node, n));
    const res = (await m.exec()) ?? [];
    const out: SnapshotRecord[] = [];
    for (const [err, h] of res) {
      const r = err ? undefined : parseRecord(h as Record<string, string>);
      if (r) out.push(r);
    }
    return out;
  }

  /** The names of a snapshot's children. */
  async children(name: string): Promise<string[]> {
    return this.redis.smembers(keys.snapshotChildren(this.node, name));
  }

  /** One consistent read of the ids in use: recorded, pending (with start ms) and the id counter. */
  async idState(): Promise<{ ids: Set<string>; pending: Map<string, number>; seq: number }> {
    const [ids, pending, seq] = (await this.redis.eval(
      STATE,
      3,
      keys.snapshots(this.node),
      keys.snapshotPending(this.node),
      keys.snapshotSeq(this.node),
      this.snapPrefix,
    )) as [string[], string[], string];
    const p = new Map<string, number>();
    for (let i = 0; i + 1 < pending.length; i += 2) p.set(pending[i] as string, Number(pending[i + 1]));
    return { ids: new Set(ids), pending: p, seq: Number(seq) };
  }
}

function parseRecord(h: Record<string, string> | undefined): SnapshotRecord | undefined {
  if (!h?.id || !h.name) return undefined;
  let labels: Record<string, string> = {};
  try {
    labels = JSON.parse(h.labels ?? '{}') as Record<string, string>;
  } catch {}
  return {
    name: h.name,
    id: h.id,
    kind: h.kind as SnapshotKind,
    parent: h.parent ? h.parent : undefined,
    labels,
    createdAt: h.createdAt ?? '',
    updatedAt: h.updatedAt ?? '',
    size: h.size !== undefined ? Number(h.size) : undefined,
    inodes: h.inodes !== undefined ? Number(h.inodes) : undefined,
  };
}
