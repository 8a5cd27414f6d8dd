import type {
  ShimCreateRequest,
  ShimKillRequest,
  ShimListRequest,
  ShimState,
  ShimTaskRef,
  ShimWaitReply,
} from '@berth/api';
import { decodeCursor, fillPage, type Page } from '@berth/kit';
import type { ExecRequest } from './execs.js';
import { ExitRecorder } from './exit-recorder.js';
import { type AgentOptions, ShimHost } from './host.js';
import { ProcessTable } from './process-table.js';
import { Reconciler } from './reconcile.js';
import type { CreateOptions } from './task-bundle.js';

export { EXIT_TOPIC } from './exit-recorder.js';
export type { AgentOptions } from './host.js';

/**
 * The shim agent's domain: tasks and exec processes run by runc under one conmon each. conmon is the
 * process's parent, holds its stdio, writes the CRI log and the exit file, and outlives this agent.
 * The agent is a facade over three parts: the process table (each task's init and its execs, their
 * lifecycle checked against one transition table), the exit recorder (exit files become persisted
 * exits, then `tasks.exit` events), and the reconciler (on start, finds everything again from Redis
 * and the files on disk; then sweeps for what inotify missed).
 */
export class ShimAgent {
  /** Records, paths, runc drivers and per-process queues every part shares. */
  readonly host: ShimHost;
  readonly exits: ExitRecorder;
  readonly processes: ProcessTable;
  private readonly reconciler: Reconciler;

  constructor(o: AgentOptions) {
    this.host = new ShimHost(o);
    this.exits = new ExitRecorder(this.host, o.publish);
    this.processes = new ProcessTable(this.host, this.exits);
    this.reconciler = new Reconciler(this.host, this.exits);
  }

  /** The conmon binary this agent runs. */
  get conmon(): string {
    return this.host.conmon;
  }

  /** The runc binary conmon runs. */
  get runcBinary(): string {
    return this.host.runcBinary;
  }

  /** create: bundle, monitor, `runc create` and the record of a new task (see createTask). */
  create(req: ShimCreateRequest, opts?: CreateOptions): Promise<ShimState> {
    return this.processes.create(req, opts);
  }

  /** start: runc's start of a created task, or lets a created exec run. */
  start(ref: ShimTaskRef): Promise<ShimState> {
    return this.processes.start(ref);
  }

  /** state: the wire state of a task or exec. */
  state(ref: ShimTaskRef): Promise<ShimState> {
    return this.processes.state(ref);
  }

  /** Every task and exec process of this node, unpaged (for figures kept in this process). */
  all(): Promise<ShimState[]> {
    return this.processes.list();
  }

  /**
   * One page of the tasks on this node (in one namespace, or all), by namespace then id; the
   * cursor is the last (namespace, id) sent.
   */
  async list(req: ShimListRequest = {}): Promise<Page<ShimState>> {
    const after = req.cursor === undefined ? undefined : decodeCursor(req.cursor, 2, 'shim list');
    const key = (t: ShimState) => `${t.namespace}\u0000${t.id}`;
    const from = after ? `${after[0]}\u0000${after[1]}` : undefined;
    const tasks = (await this.processes.list(req.namespace))
      .filter((t) => from === undefined || key(t) > from)
      .sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    return fillPage(tasks, { limit: req.limit, keyOf: (t) => [t.namespace, t.id] });
  }

  /** kill: a signal to a task's init (or all its processes) or an exec; exited is no error. */
  kill(req: ShimKillRequest): Promise<{ delivered: boolean }> {
    return this.processes.kill(req);
  }

  /** wait: resolves once the exit of the task or exec is persisted. */
  wait(ref: ShimTaskRef, signal?: AbortSignal): Promise<ShimWaitReply> {
    return this.exits.wait(ref, signal);
  }

  /** delete: removes a task that is not running (everything it left) or an exec. */
  delete(ref: ShimTaskRef): Promise<ShimState> {
    return this.processes.delete(ref);
  }

  /** remove-files: removes a container's generated files and kept log once it has no task here. */
  removeFiles(ref: ShimTaskRef): Promise<void> {
    return this.processes.removeFiles(ref);
  }

  /** exec: prepares a process in a running task; `start` with its execId runs it. */
  exec(req: ExecRequest): Promise<ShimState> {
    return this.processes.exec(req);
  }

  /** Finds every task again after a (re)start (see Reconciler.recover). */
  recover(): ReturnType<Reconciler['recover']> {
    return this.reconciler.recover();
  }

  /** One pass of the sweep now: reconciles every live task once (see Reconciler.sweep). */
  sweep(): Promise<void> {
    return this.reconciler.sweep();
  }

  /** Reconciles live tasks every intervalMs until close(). */
  startSweeper(intervalMs: number): void {
    this.reconciler.startSweeper(intervalMs);
  }

  /** Stops watching; containers and their monitors keep running. */
  async close(): Promise<void> {
    this.reconciler.stop();
    this.exits.close();
    this.processes.close();
  }
}
