import { BerthError, Code } from '@berth/api';
import { redactArgs, withSpan } from '@berth/kit/tracing';
import { shimMetrics } from '../metrics.js';
import { type CommandResult, lastLine, runCommandOffLoop } from './command.js';
import { startThroughFifo } from './exec-fifo.js';

/**
 * How long one runc command may run before its process group is killed: far past any command's
 * normal time (a `delete --force` of a live container polls in 100 ms steps), only a bound on one
 * that hangs (Node's spawn, before the spawn addon ran runc, had none).
 */
const RUNC_DEADLINE_MS = 5 * 60_000;

/** runc's `state` output (the fields berth reads). */
export interface RuncState {
  id: string;
  pid: number;
  status: 'created' | 'running' | 'pausing' | 'paused' | 'stopped';
  bundle: string;
}

/**
 * runc's error as one line: the message of its last logrus line (text or JSON). A runc that
 * crashed has a Go stack trace there instead: its `panic:` or `fatal error:` line is taken, and a
 * runc a signal ended says which signal.
 */
function runcMessage(r: CommandResult): string {
  const crash = /^(?:panic|fatal error): .*$/m.exec(r.stderr)?.[0];
  const said = crash ?? runcLogLine(lastLine(r.stderr) || lastLine(r.stdout)).msg;
  if (r.signal && !r.timedOut) return said ? `killed by ${r.signal}: ${said}` : `killed by ${r.signal}`;
  return said || `exit status ${r.code}`;
}

/**
 * One line runc logged: its level and message (logrus text or JSON), or a plain line's text. Read
 * from runc's own output here and from what conmon relays of it (domain/util.ts runtimeMessage).
 */
export function runcLogLine(line: string): { level?: string; msg: string } {
  if (line.startsWith('{')) {
    try {
      const j = JSON.parse(line) as { level?: unknown; msg?: unknown };
      if (typeof j.msg === 'string')
        return { ...(typeof j.level === 'string' ? { level: j.level } : {}), msg: j.msg };
    } catch {
      // not JSON: read as text
    }
  }
  // logrus quotes a message only when it has to (spaces, quotes): msg="a b" or msg=word.
  const m = /\bmsg=(?:"((?:[^"\\]|\\.)*)"|(\S+))/.exec(line);
  if (!m) return { msg: line };
  const level = /\blevel=(\w+)/.exec(line)?.[1];
  const msg = (m[1] ?? m[2] ?? '').replace(/\\"/g, '"').replace(/\\n/g, ' ');
  return level ? { level, msg } : { msg };
}

/**
 * True when runc failed because the container is gone or its process has ended, in runc 1.0-1.3's
 * words: `container does not exist` (1.0: `container "<id>" does not exist`), `container not
 * running` (a kill or pause of a stopped container), and a signal to an init that has just exited
 * (`unable to signal init: no such process`, Go's `os: process already finished`).
 */
export function isGone(message: string): boolean {
  return /container(?: "[^"]*")? does not exist|container not running|process already finished|no such process/i.test(
    message,
  );
}

/**
 * True when runc refused the command in the container's present state (runc 1.1's errors):
 * resume of a container that is not paused, start of a stopped or running one, delete without
 * --force of a live one, a state transition it does not allow.
 */
export function isRefusal(message: string): boolean {
  return /container (?:not paused|paused|still running|init still running)|cannot start (?:a|an) |cannot delete container .* that is not stopped|invalid state transition/i.test(
    message,
  );
}

/**
 * The code of a failed runc command, from its message: gone or not running is NOT_FOUND (as
 * containerd's runc shim answers NotFound for a kill of either), a refusal in the container's state
 * FAILED_PRECONDITION, and every other failure INTERNAL: a state runc cannot read, a cgroup it
 * cannot walk, runc dying. Callers read FAILED_PRECONDITION from a kill as "not running", so a
 * failure must never be answered with it.
 */
export function runcFailureCode(message: string): Code {
  if (isGone(message)) return Code.NOT_FOUND;
  if (isRefusal(message)) return Code.FAILED_PRECONDITION;
  return Code.INTERNAL;
}

/**
 * Drives the runc binary for one state root (`--root`). Each method runs one runc command and
 * throws a BerthError naming the container and carrying runc's message when runc fails (its code:
 * runcFailureCode; DEADLINE_EXCEEDED when runc hung past the deadline).
 */
export class Runc {
  constructor(
    readonly root: string,
    readonly binary = 'runc',
    private readonly deadlineMs = RUNC_DEADLINE_MS,
  ) {}

  /** Runs one runc command in a span `runc <what>`: arguments (redacted), exit status, duration. */
  private run(args: string[], id: string, what: string, input?: string): Promise<string> {
    const argv = ['--root', this.root, ...args];
    const attrs = {
      'process.command': this.binary,
      'process.command_args': [this.binary, ...redactArgs(argv)],
      'berth.container.id': id,
    };
    return withSpan(`runc ${what}`, attrs, async (span) => {
      const started = performance.now();
      const r = await runCommandOffLoop(this.binary, argv, this.deadlineMs, input);
      shimMetrics().runc(what, (performance.now() - started) / 1000, r.code === 0 ? 'ok' : 'error');
      span.setAttribute('process.exit.code', r.code);
      if (r.signal) span.setAttribute('berth.process.signal', r.signal);
      if (r.code !== 0) {
        const msg = runcMessage(r);
        // A runc killed at the deadline hung: a timeout, not a refusal the caller could act on.
        const code = r.timedOut ? Code.DEADLINE_EXCEEDED : runcFailureCode(msg);
        throw new BerthError(code, `task "${id}": runc ${what} failed: ${msg}`);
      }
      return r.stdout;
    });
  }

  start(id: string): Promise<string> {
    return this.run(['start', id], id, 'start');
  }

  /**
   * Starts a created container whose init has this pid: through runc's exec fifo when it is there
   * (what `runc start` does, without spawning runc: see startThroughFifo), else with `runc start`.
   */
  startCreated(id: string, initPid: number): Promise<void> {
    const attrs = { 'berth.container.id': id, 'process.pid': initPid };
    return withSpan('runc start (exec fifo)', attrs, async (span) => {
      const started = performance.now();
      const how = await startThroughFifo(this.root, id, initPid).catch((err: unknown) => {
        shimMetrics().runc('start', (performance.now() - started) / 1000, 'error');
        throw err;
      });
      span.setAttribute('berth.start.through', how);
      if (how === 'no-fifo') await this.start(id);
      else shimMetrics().runc('start', (performance.now() - started) / 1000, 'ok');
    });
  }

  async state(id: string): Promise<RuncState | undefined> {
    try {
      return JSON.parse(await this.run(['state', id], id, 'state')) as RuncState;
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) return undefined;
      throw err;
    }
  }

  /**
   * Sends `signal` to the container's init (or, with `all`, every process in its cgroup). A
   * created container's init is signalled too; a stopped or absent one is NOT_FOUND.
   */
  async kill(id: string, signal: string | number, all: boolean): Promise<void> {
    await this.run(['kill', ...(all ? ['--all'] : []), id, String(signal)], id, 'kill');
  }

  /** Deletes runc's record (force kills a created or running container); absent is fine. */
  async delete(id: string, force: boolean): Promise<void> {
    try {
      await this.run(['delete', ...(force ? ['--force'] : []), id], id, 'delete');
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.NOT_FOUND) return;
      throw err;
    }
  }

  async pause(id: string): Promise<void> {
    await this.run(['pause', id], id, 'pause');
  }

  async resume(id: string): Promise<void> {
    await this.run(['resume', id], id, 'resume');
  }

  async pids(id: string): Promise<number[]> {
    const out = await this.run(['ps', '--format', 'json', id], id, 'ps');
    const pids = JSON.parse(out) as number[] | null;
    return pids ?? [];
  }

  /** Applies new linux.resources (OCI JSON) to a live container. */
  async update(id: string, resources: Record<string, unknown>): Promise<void> {
    await this.run(['update', '--resources', '-', id], id, 'update', JSON.stringify(resources));
  }
}
