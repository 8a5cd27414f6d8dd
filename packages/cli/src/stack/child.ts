import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ChildState, ChildStatus } from '../context.js';
import { isSameProcess, exited as pidExited, terminatePid } from './proc.js';
import { MALLOC_ENV } from './stack-plan.js';

/** How often an adopted process (not our child: no 'exit' event) is checked for being gone. */
export const ADOPTED_POLL_MS = 250;

/**
 * Digest of what a child is started with: command, arguments and the environment variables that
 * are berth's (BERTH_*, and the Node and malloc settings the supervisor adds), never the rest of
 * the caller's environment, which differs from one shell to the next.
 */
export function specHash(spec: ChildSpec): string {
  const env = Object.entries(spec.env)
    .filter(([k]) => k.startsWith('BERTH_') || k === 'NODE_OPTIONS' || k in MALLOC_ENV)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify([spec.name, spec.replica, spec.command, spec.args, env]))
    .digest('hex')
    .slice(0, 32);
}

/** How a crashed process is restarted: exponential backoff, reset once it stayed up a while. */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A process that ran at least this long before dying restarts after `initialMs` again. */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 30_000, resetAfterMs: 10_000 };

/** What to run for one supervised process. */
export interface ChildSpec {
  /** Service name (`image-service`) or embedded server (`nats-server`). */
  name: string;
  kind: 'service' | 'embedded';
  replica: number;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  logFile: string;
  /** An argv element that identifies the program in /proc/<pid>/cmdline (see isSameProcess). */
  marker: string;
  /** The services a co-hosted process runs (absent for a process that runs one service). */
  services?: readonly string[];
}

/**
 * One process under supervision. It restarts itself with backoff when the process dies, until
 * stop() is called. Output goes to the spec's log file (appended, 0640). Each child gets its own
 * process group, so a Ctrl-C on a foreground `berth up` reaches only the supervisor, which then
 * stops everything in order.
 */
export class Supervised {
  private proc: ChildProcess | undefined;
  private status: ChildStatus = 'stopped';
  private restarts = 0;
  private startedAt: number | undefined;
  private lastExit: string | undefined;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** A process a dead supervisor started, taken over: watched by polling, signalled by pid. */
  private adopted: number | undefined;
  private poll: NodeJS.Timeout | undefined;
  private readonly hash: string;

  constructor(
    readonly spec: ChildSpec,
    private readonly onChange: () => void,
    private readonly policy: BackoffPolicy = DEFAULT_BACKOFF,
  ) {
    this.delayMs = policy.initialMs;
    this.hash = specHash(spec);
  }

  get pid(): number | undefined {
    return this.adopted ?? this.proc?.pid;
  }

  /** Whether the process runs now (started here, or adopted and not yet gone). */
  get running(): boolean {
    if (this.adopted !== undefined) return true;
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Takes over a process that a supervisor which died started from the same spec (`from` is its
   * entry in that supervisor's state file): it keeps running, is watched by polling /proc, and
   * is restarted as usual once it is gone. Returns false (nothing taken) when the pid no longer
   * runs that program or was started from another spec.
   */
  adopt(from: ChildState): boolean {
    const pid = from.pid;
    if (pid === null || from.specHash !== this.hash) return false;
    if (pidExited(pid) || !isSameProcess(pid, this.spec.marker)) return false;
    this.adopted = pid;
    this.proc = undefined;
    this.status = 'running';
    this.restarts = from.restarts;
    this.startedAt = from.startedAt ? Date.parse(from.startedAt) : Date.now();
    if (from.lastExit) this.lastExit = from.lastExit;
    this.poll = setInterval(() => {
      if (!pidExited(pid) && isSameProcess(pid, this.spec.marker)) return;
      clearInterval(this.poll);
      this.poll = undefined;
      this.adopted = undefined;
      // Only its parent, the dead supervisor, could have learnt how it ended.
      this.exited(undefined, 'exited while adopted (status unknown)');
    }, ADOPTED_POLL_MS);
    this.appendNote({
      msg: `berth supervisor: adopted ${this.spec.name} (pid ${pid}) from a supervisor that died`,
    });
    this.onChange();
    return true;
  }

  /** Snapshot for the state file and `berth status`. */
  state(): ChildState {
    return {
      name: this.spec.name,
      kind: this.spec.kind,
      replica: this.spec.replica,
      pid: this.running ? (this.pid ?? null) : null,
      status: this.status,
      restarts: this.restarts,
      startedAt: this.startedAt ? new Date(this.startedAt).toISOString() : null,
      logFile: this.spec.logFile,
      marker: this.spec.marker,
      specHash: this.hash,
      ...(this.spec.services ? { services: [...this.spec.services] } : {}),
      ...(this.lastExit ? { lastExit: this.lastExit } : {}),
    };
  }

  /** Starts the process now. Returns the child so a caller can wait for it to be ready. */
  start(): ChildProcess {
    this.stopping = false;
    mkdirSync(dirname(this.spec.logFile), { recursive: true });
    rotateIfLarge(this.spec.logFile);
    const fd = openSync(this.spec.logFile, 'a', 0o640);
    let proc: ChildProcess;
    try {
      note(fd, { msg: `berth supervisor: starting ${this.spec.name}`, replica: this.spec.replica });
      proc = spawn(this.spec.command, this.spec.args, {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: this.spec.env,
      });
    } finally {
      closeSync(fd);
    }
    this.proc = proc;
    this.startedAt = Date.now();
    this.status = 'running';
    proc.on('error', (err) => {
      // Spawn failures (ENOENT) emit no 'exit'; treat them as one.
      if (proc.pid === undefined) this.exited(proc, `spawn failed: ${err.message}`);
    });
    proc.on('exit', (code, signal) =>
      this.exited(proc, signal ? `killed by ${signal}` : `exit code ${code}`),
    );
    this.onChange();
    return proc;
  }

  private exited(proc: ChildProcess | undefined, why: string): void {
    if (proc !== this.proc) return;
    this.lastExit = why;
    const ranMs = Date.now() - (this.startedAt ?? Date.now());
    if (this.stopping) {
      this.status = 'stopped';
      this.onChange();
      return;
    }
    this.delayMs = ranMs >= this.policy.resetAfterMs ? this.policy.initialMs : this.delayMs;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.policy.maxMs);
    this.status = 'backoff';
    this.appendNote({ msg: `berth supervisor: ${this.spec.name} ${why}; restarting in ${delay} ms` });
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.restarts++;
      try {
        this.start();
      } catch (err) {
        this.exited(this.proc as ChildProcess, `restart failed: ${(err as Error).message}`);
      }
    }, delay);
    this.onChange();
  }

  private appendNote(fields: Record<string, unknown>): void {
    try {
      const fd = openSync(this.spec.logFile, 'a', 0o640);
      note(fd, fields);
      closeSync(fd);
    } catch {
      // The log directory may be gone during teardown; the note is only a courtesy.
    }
  }

  /**
   * Stops supervising and ends the process: SIGTERM to its pid (never its group, so a shim's
   * containers survive), SIGKILL after `graceMs`. Resolves once it has exited.
   */
  async stop(graceMs: number): Promise<'stopped' | 'killed' | 'not-running'> {
    this.stopping = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.status = 'stopped';
      this.onChange();
    }
    const adopted = this.adopted;
    if (adopted !== undefined) {
      clearInterval(this.poll);
      this.poll = undefined;
      this.status = 'stopping';
      this.onChange();
      // Not our child: signalled by pid (never its group: a shim's containers survive) and polled.
      const how = await terminatePid(adopted, graceMs);
      this.adopted = undefined;
      this.lastExit = how === 'killed' ? 'killed by SIGKILL' : 'stopped (adopted)';
      this.status = 'stopped';
      this.onChange();
      return how === 'killed' ? 'killed' : 'stopped';
    }
    const proc = this.proc;
    if (!proc || !this.running) {
      this.status = 'stopped';
      return 'not-running';
    }
    this.status = 'stopping';
    this.onChange();
    const done = once(proc, 'exit');
    proc.kill('SIGTERM');
    let killed = false;
    const killer = setTimeout(() => {
      this.appendNote({
        msg: `berth supervisor: ${this.spec.name} ignored SIGTERM for ${graceMs} ms; SIGKILL`,
      });
      killed = true;
      proc.kill('SIGKILL');
    }, graceMs);
    await done;
    clearTimeout(killer);
    return killed ? 'killed' : 'stopped';
  }
}

/** Log files past this size are rotated (to `<file>.1`) when their process (re)starts. */
export const LOG_ROTATE_BYTES = 64 * 1024 * 1024;

/**
 * Keeps one previous generation of a log: a service that runs for months under `berth up` must
 * not fill the disk, and a restart is the moment its file descriptor can change.
 */
export function rotateIfLarge(file: string): void {
  try {
    if (statSync(file).size > LOG_ROTATE_BYTES) renameSync(file, `${file}.1`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Appends one JSON line in the same shape as the services' pino lines. */
function note(fd: number, fields: Record<string, unknown>): void {
  writeSync(fd, `${JSON.stringify({ level: 30, time: new Date().toISOString(), ...fields })}\n`);
}
