import type { TaskStatus } from '@berth/api';
import { keys, type Redis, redisScript } from '@berth/kit';

/** What the agent persists about one monitored process (a task's init or an exec). */
export interface ProcRecord {
  namespace: string;
  id: string;
  execId?: string;
  status: TaskStatus;
  pid: number;
  monitorPid: number;
  /** Bundle (task) or exec directory. */
  dir: string;
  logPath: string;
  terminal: boolean;
  stdin: boolean;
  /** stdin stays open across attach sessions (conmon --leave-stdin-open). */
  stdinKeep?: boolean;
  createdAt: string;
  startedAt?: string;
  exitCode?: number;
  exitedAt?: string;
  reason?: string;
  /** Set once the exit was announced on NATS (the exit itself is persisted first). */
  exitPublished?: boolean;
  /** W3C traceparent of the request that started the process: its exit joins that trace. */
  traceparent?: string;
  /**
   * W3C traceparent of the latest kill request while the process ran: the exit it causes is
   * announced in that trace (`berth stop` shows the exit it waited for).
   */
  killTraceparent?: string;
  /**
   * The task's init is PID 1 of a PID namespace of its own, so SIGKILL to it takes every process of
   * the container with it (the kernel kills the namespace). Absent: unknown (older records).
   */
  ownPidNs?: boolean;
}

function toHash(r: ProcRecord): Record<string, string> {
  const h: Record<string, string> = {
    namespace: r.namespace,
    id: r.id,
    status: r.status,
    pid: String(r.pid),
    monitorPid: String(r.monitorPid),
    dir: r.dir,
    logPath: r.logPath,
    terminal: r.terminal ? '1' : '0',
    stdin: r.stdin ? '1' : '0',
    createdAt: r.createdAt,
  };
  if (r.execId) h.execId = r.execId;
  if (r.stdinKeep) h.stdinKeep = '1';
  if (r.startedAt) h.startedAt = r.startedAt;
  if (r.exitCode !== undefined) h.exitCode = String(r.exitCode);
  if (r.exitedAt) h.exitedAt = r.exitedAt;
  if (r.reason) h.reason = r.reason;
  if (r.traceparent) h.traceparent = r.traceparent;
  if (r.killTraceparent) h.killTraceparent = r.killTraceparent;
  if (r.ownPidNs) h.ownPidNs = '1';
  return h;
}

function fromHash(h: Record<string, string>): ProcRecord | undefined {
  if (!h.id || !h.namespace || !h.status) return undefined;
  const r: ProcRecord = {
    namespace: h.namespace,
    id: h.id,
    status: h.status as TaskStatus,
    pid: Number(h.pid ?? 0),
    monitorPid: Number(h.monitorPid ?? 0),
    dir: h.dir ?? '',
    logPath: h.logPath ?? '',
    terminal: h.terminal === '1',
    stdin: h.stdin === '1',
    createdAt: h.createdAt ?? '',
  };
  if (h.execId) r.execId = h.execId;
  if (h.stdinKeep === '1') r.stdinKeep = true;
  if (h.startedAt) r.startedAt = h.startedAt;
  if (h.exitCode !== undefined) r.exitCode = Number(h.exitCode);
  if (h.exitedAt) r.exitedAt = h.exitedAt;
  if (h.reason) r.reason = h.reason;
  if (h.exitPublished === '1') r.exitPublished = true;
  if (h.traceparent) r.traceparent = h.traceparent;
  if (h.killTraceparent) r.killTraceparent = h.killTraceparent;
  if (h.ownPidNs === '1') r.ownPidNs = true;
  return r;
}

// Records an exit once: a second report (inotify plus a recovery scan) changes nothing. Returns
// the record as it now is when this call stopped it, so its announcement needs no second read.
const RECORD_EXIT = redisScript(
  'shim record-exit',
  `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'status') == 'stopped' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'stopped', 'exitCode', ARGV[1], 'exitedAt', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[3]) end
return redis.call('HGETALL', KEYS[1])`,
);

// Moves a record from one status to another only if it is still in the expected one.
const TRANSITION = redisScript(
  'shim transition',
  `
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1`,
);

const MARK_PUBLISHED = redisScript(
  'shim mark-published',
  `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'exitPublished', '1') end return 0`,
);

// Remembers the trace of a kill, only on a record of a process that has not exited yet (never a
// stub of a deleted record, never rewriting the cause of an exit already recorded).
const MARK_KILL = redisScript(
  'shim mark-kill',
  `
local st = redis.call('HGET', KEYS[1], 'status')
if not st or st == 'stopped' then return 0 end
redis.call('HSET', KEYS[1], 'killTraceparent', ARGV[1])
return 1`,
);

/** The shim's Redis records (keys.shimTask/shimTasks/shimExec/shimExecs of one node). */
export class ShimStore {
  constructor(
    private readonly redis: Redis,
    private readonly node: string,
  ) {}

  private key(ns: string, id: string, execId?: string): string {
    return execId ? keys.shimExec(this.node, ns, id, execId) : keys.shimTask(this.node, ns, id);
  }

  /** Claims a task id on this node; false when it is taken. */
  async reserveTask(ns: string, id: string): Promise<boolean> {
    return (await this.redis.sadd(keys.shimTasks(this.node), `${ns}/${id}`)) === 1;
  }

  async releaseTask(ns: string, id: string): Promise<void> {
    await this.redis.srem(keys.shimTasks(this.node), `${ns}/${id}`);
  }

  /** Claims an exec id within a task; false when it is taken. */
  async reserveExec(ns: string, id: string, execId: string): Promise<boolean> {
    return (await this.redis.sadd(keys.shimExecs(this.node, ns, id), execId)) === 1;
  }

  async releaseExec(ns: string, id: string, execId: string): Promise<void> {
    await this.redis
      .multi()
      .srem(keys.shimExecs(this.node, ns, id), execId)
      .del(this.key(ns, id, execId))
      .exec();
  }

  async put(r: ProcRecord): Promise<void> {
    await this.redis.hset(this.key(r.namespace, r.id, r.execId), toHash(r));
  }

  async get(ns: string, id: string, execId?: string): Promise<ProcRecord | undefined> {
    return fromHash(await this.redis.hgetall(this.key(ns, id, execId)));
  }

  /** Every "<ns>/<id>" claimed on this node. */
  async taskRefs(): Promise<{ namespace: string; id: string }[]> {
    const members = await this.redis.smembers(keys.shimTasks(this.node));
    return members.flatMap((m) => {
      const i = m.indexOf('/');
      return i > 0 ? [{ namespace: m.slice(0, i), id: m.slice(i + 1) }] : [];
    });
  }

  async execIds(ns: string, id: string): Promise<string[]> {
    return this.redis.smembers(keys.shimExecs(this.node, ns, id));
  }

  /**
   * Persists an exit: the record as it now is when it was recorded now, undefined when it already
   * was (or there is no record).
   */
  async recordExit(
    ns: string,
    id: string,
    execId: string | undefined,
    e: { exitCode: number; exitedAt: string; reason?: string },
  ): Promise<ProcRecord | undefined> {
    const r = (await this.redis.eval(
      RECORD_EXIT,
      1,
      this.key(ns, id, execId),
      String(e.exitCode),
      e.exitedAt,
      e.reason ?? '',
    )) as number | string[];
    if (!Array.isArray(r)) return undefined;
    const h: Record<string, string> = {};
    for (let i = 0; i + 1 < r.length; i += 2) h[r[i] as string] = r[i + 1] as string;
    return fromHash(h);
  }

  async markPublished(ns: string, id: string, execId?: string): Promise<void> {
    const k = this.key(ns, id, execId);
    // HSET on a deleted record would resurrect a stub: only mark what still exists.
    await this.redis.eval(MARK_PUBLISHED, 1, k);
  }

  /** Records the trace of a kill sent to a live process: its exit is announced there. */
  async markKill(ns: string, id: string, execId: string | undefined, traceparent: string): Promise<void> {
    await this.redis.eval(MARK_KILL, 1, this.key(ns, id, execId), traceparent);
  }

  /** Moves from one status to another (with extra fields) if still in `from`; true if it moved. */
  async transition(
    ns: string,
    id: string,
    execId: string | undefined,
    from: TaskStatus,
    to: TaskStatus,
    fields: Record<string, string> = {},
  ): Promise<boolean> {
    const flat = Object.entries(fields).flat();
    return (await this.redis.eval(TRANSITION, 1, this.key(ns, id, execId), from, to, ...flat)) === 1;
  }

  /** Removes a task's records, its execs' included. */
  async removeTask(ns: string, id: string): Promise<void> {
    const execs = await this.execIds(ns, id);
    const m = this.redis.multi();
    for (const e of execs) m.del(this.key(ns, id, e));
    m.del(keys.shimExecs(this.node, ns, id));
    m.del(this.key(ns, id));
    m.srem(keys.shimTasks(this.node), `${ns}/${id}`);
    await m.exec();
  }
}
