import { constants } from 'node:os';
import { BerthError, Code } from '@berth/api';
import { traceparentOf } from '@berth/kit/tracing';
import { monitorStat } from '../runtime/monitor.js';
import { runcLogLine } from '../runtime/runc.js';

/** Process key for in-memory maps: "<ns>/<id>" or "<ns>/<id>/<execId>". */
export function procKey(ns: string, id: string, execId?: string): string {
  return execId ? `${ns}/${id}/${execId}` : `${ns}/${id}`;
}

/** Waits until cond() holds, checking every intervalMs, for at most timeoutMs; returns cond's last value. */
export async function until(
  cond: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 10,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const ERROR_LEVELS: ReadonlySet<string> = new Set(['error', 'fatal', 'panic']);

/**
 * Extracts runc's cause from what conmon relays (runc's stderr: logrus lines, then its plain
 * message). The first error-level line is the cause: runc logs its cleanup after it (warnings such
 * as "cannot toggle freezer" when the container shares a PID namespace), and a failure in nsexec
 * is logged (fatal) before the generic "runc create failed" error it leads to. Without one, the
 * first plain line, then the first line at all.
 */
export function runtimeMessage(text: string | undefined): string {
  const lines = (text ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map(runcLogLine);
  const pick =
    lines.find((l) => l.level !== undefined && ERROR_LEVELS.has(l.level)) ??
    lines.find((l) => l.level === undefined) ??
    lines[0];
  return pick?.msg.trim() || 'unknown error';
}

/** A failed runc create/exec as a BerthError: a missing command is bad input, the rest a precondition. */
export function runtimeFailure(what: string, text: string | undefined): BerthError {
  const msg = runtimeMessage(text);
  const code = /executable file not found|no such file or directory|permission denied/i.test(msg)
    ? Code.INVALID_ARGUMENT
    : Code.FAILED_PRECONDITION;
  return new BerthError(code, `${what}: ${msg}`);
}

/** SIGKILLs a process by pid (a monitor, or an exec that must not run); gone already is fine. */
export function killMonitor(pid: number | undefined): void {
  if (!pid || pid <= 0) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * SIGKILLs the process group a monitor leads (conmon runs in a session of its own): conmon and
 * the runtime it runs at once, so neither can go on to start a process nobody waits for. `pid`
 * was read from the monitor's pid file (`conmonPidFile`, conmon's -P), now or when the process
 * was set up: it is acted on only while it is still that monitor (monitorStat), never a process
 * that was given the number since.
 */
export function killProcessGroupOf(pid: number | undefined, conmonPidFile: string): void {
  const st = monitorStat(pid, conmonPidFile);
  if (st === undefined || pid === undefined) return;
  if (st.pgid !== pid) {
    killMonitor(pid);
    return; // not a group of its own: only the monitor is ours to end
  }
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Signal names as runc and process.kill both take them: "SIGTERM"; numbers stay numbers. */
export function normalizeSignal(s: string | number): NodeJS.Signals | number {
  if (typeof s === 'number') return s;
  if (/^\d+$/.test(s)) return Number(s);
  const up = s.toUpperCase();
  const name = (up.startsWith('SIG') ? up : `SIG${up}`) as NodeJS.Signals;
  if (!Object.hasOwn(constants.signals, name)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `unknown signal "${s}"`);
  }
  return name;
}

/**
 * The trace context of the request starting a process, as a record field: the process's exit is
 * later announced in that trace (the exit is what `berth run` waits for).
 */
export function startTrace(): { traceparent?: string } {
  const tp = traceparentOf();
  return tp ? { traceparent: tp } : {};
}

/**
 * Remembers the trace of the kill request being served on a live process's record, so the exit
 * it causes is announced in that trace (see ExitRecorder.announce). Sent before the signal: the
 * exit may be recorded before the kill returns.
 */
export async function markKillTrace(
  store: { markKill(ns: string, id: string, execId: string | undefined, tp: string): Promise<void> },
  ref: { namespace: string; id: string; execId?: string | undefined },
): Promise<void> {
  const tp = traceparentOf();
  if (tp) await store.markKill(ref.namespace, ref.id, ref.execId, tp);
}
