import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import {
  type ExitStatus,
  type ProcessState,
  type Resources,
  type ShimStats,
  type Task,
  TaskApi,
} from '@berth/api';
import { collectStreams, type LogLine, readCriLog } from './logs.js';
import type { RequestOptions, Scope } from './scope.js';
import { type Attachment, attachTo, nodeLog } from './streams.js';
import { exitWaiter, type WaitOptions } from './wait.js';

/** Options of {@link Tasks.exec}. */
export interface ExecOptions {
  /** The exec's id (`[a-zA-Z0-9_.-]{1,64}`); default a random one. */
  execId?: string;
  env?: string[];
  cwd?: string;
  user?: string;
  /** Fail with DEADLINE_EXCEEDED if the process runs longer (it is killed first). */
  timeoutMs?: number;
  /** Most bytes of each stream kept when the output is read on this host (default 4 MiB). */
  maxOutputBytes?: number;
}

/** What a finished exec did. */
export interface ExecResult extends ExitStatus {
  execId: string;
  /** The process's output as UTF-8 text (a byte that is not valid UTF-8 reads as U+FFFD). */
  stdout: string;
  stderr: string;
  /** True when the output was longer than the cap and only its start is returned. */
  truncated: boolean;
}

/** Options of {@link Tasks.logs}. */
export interface LogsOptions {
  /** Keep reading until the task exits (default false: what is there now). */
  follow?: boolean;
  signal?: AbortSignal;
}

/** Options of {@link Tasks.attach}. */
export interface AttachOptions {
  /** An exec process of the container instead of its task. */
  execId?: string;
  /** Send stdin too (the process must have been created with stdin open). */
  stdin?: boolean;
}

const quiet = <T>(p: Promise<T>) => p.catch(() => undefined);

/** The processes of containers (the task-service's tasks and execs), as containerd's tasks. */
export class Tasks {
  constructor(private readonly scope: Scope) {}

  /** Creates a container's task (runc create under conmon) on its node; start it with {@link Tasks.start}. */
  create(id: string, opts?: RequestOptions): Promise<Task> {
    return this.scope.call(TaskApi, 'create', { id }, opts);
  }

  /** Starts a task, or the exec process `execId`. */
  start(id: string, o: { execId?: string } = {}): Promise<ProcessState> {
    return this.scope.call(TaskApi, 'start', { id, ...o });
  }

  /** State of a task or exec process. */
  state(id: string, o: { execId?: string } = {}): Promise<ProcessState> {
    return this.scope.call(TaskApi, 'state', { id, ...o });
  }

  /**
   * Resolves with the exit of a task (or exec) once it happened: at once when it already
   * exited. Listens to `tasks.exit` and checks the recorded state, so a lost event or a
   * restarted task-service never leaves it hanging.
   */
  async wait(id: string, o: WaitOptions = {}): Promise<ExitStatus> {
    const full = (await this.scope.call(TaskApi, 'get-container', { id })).container.id;
    const w = await exitWaiter(this.scope, full, o);
    return w.exited;
  }

  /** Signals a task or exec (`signal`: number or name, default SIGTERM; `all`: every process). */
  async kill(
    id: string,
    o: { signal?: number | string; execId?: string; all?: boolean } = {},
  ): Promise<void> {
    await this.scope.call(TaskApi, 'kill', { id, ...o });
  }

  /** Removes a stopped task or exec and returns its exit status. */
  delete(id: string, o: { execId?: string } = {}): Promise<ExitStatus> {
    return this.scope.call(TaskApi, 'delete', { id, ...o });
  }

  /**
   * Runs a command in a running container and returns its exit code and output. The output is
   * read from the exec's log file when that file is on this host, else streamed from the node's
   * shim over NATS; at most `maxOutputBytes` of each stream is kept either way.
   */
  async exec(id: string, args: string[], o: ExecOptions = {}): Promise<ExecResult> {
    const info = await this.scope.call(TaskApi, 'get-container', { id });
    const full = info.container.id;
    const execId = o.execId ?? `sdk-${randomBytes(6).toString('hex')}`;
    const st = await this.scope.call(TaskApi, 'exec', {
      id: full,
      execId,
      args,
      ...(o.env ? { env: o.env } : {}),
      ...(o.cwd ? { cwd: o.cwd } : {}),
      ...(o.user ? { user: o.user } : {}),
    });
    const waiter = await exitWaiter(this.scope, full, {
      execId,
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    });
    let exit: ExitStatus;
    try {
      await this.scope.call(TaskApi, 'start', { id: full, execId });
      exit = await waiter.exited;
    } catch (err) {
      waiter.close();
      await quiet(this.scope.call(TaskApi, 'kill', { id: full, execId, signal: 'SIGKILL' }));
      await quiet(this.scope.call(TaskApi, 'delete', { id: full, execId }));
      throw err;
    }
    try {
      const max = o.maxOutputBytes ?? 4 * 1024 * 1024;
      const out =
        st.logPath && (await readable(st.logPath))
          ? await collectStreams(readCriLog(st.logPath), max)
          : await collectStreams(nodeLog(this.scope, { node: info.container.node, id: full, execId }), max);
      return { ...exit, execId, ...out };
    } finally {
      await quiet(this.scope.call(TaskApi, 'delete', { id: full, execId }));
    }
  }

  /**
   * The lines of a container's log (its CRI log file), optionally following it until the task
   * exits. The file is read directly where it is readable (a program on the container's node),
   * else streamed by the shim of its node over NATS, flow-controlled: the node reads no further
   * ahead than this iteration consumes.
   */
  async *logs(id: string, o: LogsOptions = {}): AsyncGenerator<LogLine> {
    const info = await this.scope.call(TaskApi, 'get-container', { id });
    const path = info.task?.logPath ?? info.container.io.logPath;
    const live = info.task !== undefined && info.task.status !== 'stopped';
    if (!path || !(await readable(path))) {
      yield* nodeLog(
        this.scope,
        { node: info.container.node, id: info.container.id },
        { follow: (o.follow ?? false) && live, ...(o.signal ? { signal: o.signal } : {}) },
      );
      return;
    }
    let waiter: Awaited<ReturnType<typeof exitWaiter>> | undefined;
    if (o.follow && live) {
      waiter = await exitWaiter(this.scope, info.container.id, o.signal ? { signal: o.signal } : {});
    }
    try {
      yield* readCriLog(path, {
        ...(waiter ? { until: waiter.exited } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } finally {
      waiter?.close();
    }
  }

  /**
   * Connects to the stdio of a container's task (or exec `execId`) through the shim of its node,
   * from any host: iterate `output()` for what it writes, `write()` to its stdin (with `stdin`),
   * `resize()` its terminal, `close()` to leave it running. Attach before starting a process to
   * see all of its output (the monitor does not replay).
   */
  async attach(id: string, o: AttachOptions = {}): Promise<Attachment> {
    const info = await this.scope.call(TaskApi, 'get-container', { id });
    return attachTo(
      this.scope,
      { node: info.container.node, id: info.container.id, ...(o.execId ? { execId: o.execId } : {}) },
      { stdin: o.stdin ?? false },
    );
  }

  /** One cgroup sample of a running task: cpu, memory, pids. */
  stats(id: string, opts?: RequestOptions): Promise<ShimStats> {
    return this.scope.call(TaskApi, 'stats', { id }, opts);
  }

  /** Host pids of a task's processes. */
  async pids(id: string): Promise<number[]> {
    return (await this.scope.call(TaskApi, 'pids', { id })).pids;
  }

  /** Freezes a task. */
  async pause(id: string): Promise<void> {
    await this.scope.call(TaskApi, 'pause', { id });
  }

  /** Thaws a paused task. */
  async resume(id: string): Promise<void> {
    await this.scope.call(TaskApi, 'resume', { id });
  }

  /** Changes a live task's resources. */
  async update(id: string, resources: Resources): Promise<void> {
    await this.scope.call(TaskApi, 'update', { id, resources });
  }

  /** Closes the stdin of a task or exec that has one. */
  async closeStdin(id: string, o: { execId?: string } = {}): Promise<void> {
    await this.scope.call(TaskApi, 'close-stdin', { id, ...o });
  }
}

async function readable(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
