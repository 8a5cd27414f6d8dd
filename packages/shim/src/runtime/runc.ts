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

/** runc 1.1 logs errors as logrus text or JSON; keep only the message. */
function runcMessage(r: CommandResult): string {
  const line = lastLine(r.stderr) || lastLine(r.stdout);
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(line);
  if (m?.[1]) return m[1].replace(/\\"/g, '"');
  try {
    const j = JSON.parse(line) as { msg?: string };
    if (j.msg) return j.msg;
  } catch {
    // plain text
  }
  return line || `exit status ${r.code}`;
}

/** True when runc failed because the container is gone or has already stopped. */
export function isGone(message: string): boolean {
  return /does not exist|not exist|container not running|process already finished|no such process|is stopped/i.test(
    message,
  );
}

/**
 * Drives the runc binary for one state root (`--root`). Each method runs one runc command and
 * throws a BerthError naming the container when runc fails.
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
        const code = r.timedOut
          ? Code.DEADLINE_EXCEEDED
          : isGone(msg)
            ? Code.NOT_FOUND
            : Code.FAILED_PRECONDITION;
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
