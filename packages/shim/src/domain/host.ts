import { BerthError, Code, ShimApi, type ShimState, type ShimTaskRef, START_MARGIN_MS } from '@berth/api';
import type { HostLayout, Redis, ServiceContext } from '@berth/kit';
import { conmonSkipsLogSync } from '../runtime/conmon.js';
import { monitorAlive } from '../runtime/monitor.js';
import { Runc } from '../runtime/runc.js';
import { type BinaryLease, sealedBinary } from '../runtime/sealed-binary.js';
import { NodeAppArmor, type NodeAppArmorOptions } from './apparmor/index.js';
import { execPaths, monitorPidFile, namespacePaths, taskPaths } from './paths.js';
import { type ProcessEvent, transition } from './process-state.js';
import { type ProcRecord, ShimStore } from './store.js';

/** The shim's logger (pino, from the service kit). */
export type Logger = ServiceContext['log'];

/** What the shim needs from the process that hosts it; no NATS in here, events go through `publish`. */
export interface AgentOptions {
  redis: Redis;
  node: string;
  layout: HostLayout;
  log: Logger;
  /** Announces an event (topic `tasks.exit`); called only after the state is persisted. */
  publish: (topic: string, namespace: string, event: unknown) => void;
  conmon?: string;
  runc?: string;
  /** Bound on waiting for conmon's first answer (runc create), ms. */
  createTimeoutMs?: number;
  /**
   * How long after its request came a create with start (or startAttached) may still start its
   * task, ms; past it the create fails DEADLINE_EXCEEDED and the task is removed, never started:
   * its caller has given up by then. Default: the create operation's timeout less 5 s.
   */
  startWithinMs?: number;
  /**
   * Let conmon fsync a container's log once its process exited (services.shim.logSync): the
   * log's tail then survives a host crash (power loss, kernel panic) right after the exit, for
   * post-mortems, at the price of a journal commit on every exit. Default false: conmon gets
   * `--no-sync-log` when it has it, and the tail is as durable as the page cache.
   */
  logSync?: boolean;
  /**
   * How AppArmor is found on this node (the kernel's switch, apparmor_parser, the kernel's list
   * of profiles); default the real node's (see NodeAppArmor). Tests inject fakes.
   */
  apparmor?: Omit<NodeAppArmorOptions, 'dir' | 'node'>;
}

/**
 * What every part of the shim's domain shares: the node's records, its paths and helper binaries,
 * one runc driver per namespace, one queue of changes per process, and the only way a record's
 * status changes (`move`, through the transition table of process-state.ts).
 */
export class ShimHost {
  readonly store: ShimStore;
  readonly layout: HostLayout;
  readonly log: Logger;
  readonly node: string;
  readonly conmon: string;
  readonly runcBinary: string;
  readonly createTimeoutMs: number;
  readonly startWithinMs: number;
  readonly logSync: boolean;
  /** The node's AppArmor: resolves a task's profile, loads berth's default one. */
  readonly apparmor: NodeAppArmor;
  private readonly serials = new Map<string, Promise<unknown>>();
  private readonly runcs = new Map<string, Runc>();

  constructor(o: AgentOptions) {
    this.store = new ShimStore(o.redis, o.node);
    this.layout = o.layout;
    this.log = o.log;
    this.node = o.node;
    this.conmon = o.conmon ?? '/usr/bin/conmon';
    this.runcBinary = o.runc ?? '/usr/sbin/runc';
    this.createTimeoutMs = o.createTimeoutMs ?? 60_000;
    this.startWithinMs = o.startWithinMs ?? ShimApi.ops.create.timeoutMs - START_MARGIN_MS;
    this.logSync = o.logSync ?? false;
    this.apparmor = new NodeAppArmor({ ...o.apparmor, dir: o.layout.apparmor, node: o.node });
  }

  /** Whether conmon gets `--no-sync-log`: unless logSync is set, when this conmon has it. */
  async skipLogSync(): Promise<boolean> {
    return !this.logSync && (await conmonSkipsLogSync(this.conmon));
  }

  /**
   * The runc a container's `runc create` runs (conmon's runtime): the sealed copy of runcBinary,
   * from which runc init need not copy itself (see SealedBinary), or runcBinary when there is
   * none. Released once runc create has ended.
   */
  runcForCreate(): Promise<BinaryLease> {
    return sealedBinary(this.runcBinary, (err) =>
      this.log.warn({ err, runc: this.runcBinary }, 'no sealed copy of runc: runc init copies itself'),
    ).lease();
  }

  /** The runc driver of one namespace (each namespace has its own runc state root). */
  runc(ns: string): Runc {
    let r = this.runcs.get(ns);
    if (!r) {
      r = new Runc(namespacePaths(this.layout, ns).runcRoot, this.runcBinary);
      this.runcs.set(ns, r);
    }
    return r;
  }

  /** True while the monitor of a task's init or exec runs: its recorded pid is still that conmon. */
  monitorAlive(r: ProcRecord): boolean {
    return monitorAlive(r.monitorPid, monitorPidFile(this.layout, r));
  }

  /** Runs fn after every earlier fn of the same key finished (one change at a time per process). */
  serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.serials.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.serials.set(key, settled);
    void settled.then(() => {
      if (this.serials.get(key) === settled) this.serials.delete(key);
    });
    return next;
  }

  /** The record of a task or exec, or NOT_FOUND naming it. */
  async mustGet(ref: ShimTaskRef): Promise<ProcRecord> {
    const r = await this.store.get(ref.namespace, ref.id, ref.execId);
    if (!r) {
      throw new BerthError(
        Code.NOT_FOUND,
        ref.execId
          ? `exec "${ref.execId}" of task "${ref.id}" not found in namespace "${ref.namespace}"`
          : `task "${ref.id}" not found in namespace "${ref.namespace}" on node "${this.node}"`,
      );
    }
    return r;
  }

  /** The record of a task or exec once `event` is checked against its state (FAILED_PRECONDITION). */
  async mustAllow(ref: ShimTaskRef, event: ProcessEvent): Promise<ProcRecord> {
    const rec = await this.mustGet(ref);
    transition(rec, rec.status, event);
    return rec;
  }

  /**
   * Persists the state `event` leads `rec` to, with extra fields, if the record is still in the
   * state it was read in (a concurrent exit wins); refused events throw before anything changes.
   * Exits are not moved here: ExitRecorder records them once, whoever reports them.
   */
  async move(rec: ProcRecord, event: ProcessEvent, fields: Record<string, string> = {}): Promise<boolean> {
    const to = transition(rec, rec.status, event);
    if (to === 'deleted') throw new BerthError(Code.INTERNAL, `"${event}" removes records: not a move`);
    if (to === rec.status && Object.keys(fields).length === 0) return true;
    return this.store.transition(rec.namespace, rec.id, rec.execId, rec.status, to, fields);
  }

  /** The wire state of a record; live ones carry the monitor's attach socket and control fifo. */
  toState(r: ProcRecord): ShimState {
    const s: ShimState = {
      namespace: r.namespace,
      id: r.id,
      status: r.status,
      pid: r.pid,
      logPath: r.logPath,
      bundle: r.dir,
      terminal: r.terminal,
      stdin: r.stdin,
      monitorPid: r.monitorPid,
      createdAt: r.createdAt,
    };
    if (r.execId) s.execId = r.execId;
    if (r.startedAt) s.startedAt = r.startedAt;
    if (r.exitCode !== undefined) s.exitCode = r.exitCode;
    if (r.exitedAt) s.exitedAt = r.exitedAt;
    if (r.reason) s.reason = r.reason;
    if (r.status !== 'stopped') {
      const p = r.execId
        ? execPaths(this.layout, r.namespace, r.id, r.execId)
        : taskPaths(this.layout, r.namespace, r.id);
      s.attachPath = p.attach;
      s.ctlPath = p.ctl;
    }
    return s;
  }
}
