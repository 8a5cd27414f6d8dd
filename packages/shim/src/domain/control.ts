import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  SHIM_EXEC_OUTPUT_MAX_BYTES,
  type ShimExecOutput,
  type ShimResizeRequest,
  type ShimStats,
  type ShimTaskRef,
  type ShimUpdateRequest,
} from '@berth/api';
import { closeAttachStdin, resizeProcessTerminal, writeConmonFifo } from '../attach.js';
import { cgroupAskOf, checkCgroupSupport, hostCgroupSupport } from '../cgroup-support.js';
import { readCriOutput } from '../cri-log.js';
import { statsOfPid } from '../runtime/cgroups.js';
import { prepareLogReopen, touchLog, watchGone } from './files.js';
import type { ShimHost } from './host.js';
import { execPaths, taskPaths } from './paths.js';
import type { ProcRecord } from './store.js';
import { procKey } from './util.js';

/** conmon's control-fifo message type that reopens the log (sizes go to its `winsz` fifo). */
const CTL_REOPEN_LOG = 2;

/** How long a reopen waits for conmon's rename (within the op's 5 s, so the error is this one's). */
const REOPEN_WITHIN_MS = 2_000;

/**
 * The operations on a live task beside its lifecycle: freeze and thaw, processes, cgroup stats,
 * resources, stdin, terminal size, logs of execs. Which states each is allowed in is the
 * transition table's answer (process-state.ts); mostly a running or paused task.
 */
export class TaskControl {
  private readonly host: ShimHost;

  /** Works on the host of an agent (the ShimAgent, or anything that carries a ShimHost). */
  constructor(owner: { readonly host: ShimHost }) {
    this.host = owner.host;
  }

  /** pause (freeze the cgroup) or resume (thaw it). */
  async setPaused(ref: ShimTaskRef, paused: boolean): Promise<void> {
    const { namespace: ns, id } = ref;
    const event = paused ? 'pause' : 'resume';
    await this.host.serial(procKey(ns, id), async () => {
      const rec = await this.host.mustAllow({ namespace: ns, id }, event);
      if (paused) await this.host.runc(ns).pause(id);
      else await this.host.runc(ns).resume(id);
      await this.host.move(rec, event);
    });
  }

  /** The host pids of every process in the task. */
  async pids(ref: ShimTaskRef): Promise<{ pids: number[] }> {
    await this.host.mustAllow({ namespace: ref.namespace, id: ref.id }, 'pids');
    return { pids: await this.host.runc(ref.namespace).pids(ref.id) };
  }

  /** A sample of the task's cgroup: cpu, memory, pids. */
  async stats(ref: ShimTaskRef): Promise<ShimStats> {
    const rec = await this.host.mustAllow({ namespace: ref.namespace, id: ref.id }, 'stats');
    return statsOfPid(rec.pid, ref.id);
  }

  /** Changes the task's resources (runc update). */
  async update(req: ShimUpdateRequest): Promise<void> {
    await this.host.mustAllow({ namespace: req.namespace, id: req.id }, 'update');
    // runc would refuse these only after reading the request: a clear answer first.
    checkCgroupSupport(cgroupAskOf(req.resources), await hostCgroupSupport(), {
      unified: `task "${req.id}": resources.unified`,
      swap: `task "${req.id}": resources.memory.swap`,
    });
    await this.host.runc(req.namespace).update(req.id, req.resources);
  }

  private ctlPath(rec: ProcRecord): string {
    return rec.execId
      ? execPaths(this.host.layout, rec.namespace, rec.id, rec.execId).ctl
      : taskPaths(this.host.layout, rec.namespace, rec.id).ctl;
  }

  private writeCtl(rec: ProcRecord, line: string): Promise<void> {
    return writeConmonFifo(
      this.ctlPath(rec),
      line,
      `the monitor of "${rec.execId ?? rec.id}" is not listening`,
    );
  }

  /**
   * Sets the terminal size of a task or exec that has a TTY: on its pty at once (a process created
   * and started right after the reply sees it), and through its monitor (which reaches the pty
   * even when the process no longer has it as its stdin).
   */
  async resize(req: ShimResizeRequest): Promise<void> {
    const rec = await this.host.mustAllow(req, 'resize');
    if (!rec.terminal) {
      throw new BerthError(Code.FAILED_PRECONDITION, `"${req.execId ?? req.id}" has no terminal to resize`);
    }
    await resizeProcessTerminal(this.ctlPath(rec), rec.pid, req.rows, req.cols);
  }

  /**
   * Asks conmon to reopen the log file (after it was rotated away) and answers once it has, as
   * containerd's reopen does: a line the container writes after the call lands in the new file.
   * The file conmon renames over the log (`<log>.tmp`) is made here first, so the new log has
   * LOG_MODE as the first one; one reopen per process at a time, so a second one does not hand
   * its .tmp to the first's rename and leave conmon making its own (0600 before conmon 2.1.13).
   */
  reopenLog(ref: ShimTaskRef): Promise<void> {
    return this.host.serial(`reopen-log:${procKey(ref.namespace, ref.id, ref.execId)}`, async () => {
      const rec = await this.host.mustAllow(ref, 'reopen-log');
      const message = `${CTL_REOPEN_LOG} 0 0\n`;
      if (!rec.logPath) return this.writeCtl(rec, message);
      const tmp = `${rec.logPath}.tmp`;
      // Already writing the file the path names (a reopen just before this one, from another
      // caller, made it): a reopen now would put an empty file in its place, and the lines
      // written since would be lost with it.
      if (await monitorWritesTo(rec.monitorPid, rec.logPath)) return;
      touchLog(rec.logPath);
      await prepareLogReopen(rec.logPath);
      const renamed = await watchGone(tmp, REOPEN_WITHIN_MS);
      try {
        await this.writeCtl(rec, message);
      } catch (err) {
        renamed.cancel();
        await rm(tmp, { force: true });
        throw err;
      }
      if (await renamed.gone) return;
      await rm(tmp, { force: true });
      const alive = this.host.monitorAlive(rec);
      throw new BerthError(
        alive ? Code.DEADLINE_EXCEEDED : Code.FAILED_PRECONDITION,
        alive
          ? `the monitor of "${rec.execId ?? rec.id}" did not reopen its log within ${REOPEN_WITHIN_MS} ms`
          : `the monitor of "${rec.execId ?? rec.id}" exited before it reopened its log`,
      );
    });
  }

  /**
   * Closes the process's stdin. conmon closes it when an attach client hangs up, so this attaches
   * and hangs up at once. A process without stdin has nothing to close.
   */
  async closeStdin(ref: ShimTaskRef): Promise<void> {
    const rec = await this.host.mustAllow(ref, 'close-stdin');
    if (!rec.stdin || rec.status === 'stopped') return;
    if (rec.stdinKeep) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `task "${ref.id}" keeps stdin open across attaches (stdinOnce false): it cannot be closed`,
      );
    }
    if (!this.host.monitorAlive(rec)) return;
    const state = this.host.toState(rec);
    if (state.attachPath) await closeAttachStdin(state.attachPath);
  }

  /** What an exec process wrote, read back from its CRI log. */
  async execOutput(ref: ShimTaskRef): Promise<ShimExecOutput> {
    if (!ref.execId) throw new BerthError(Code.INVALID_ARGUMENT, 'exec-output needs an execId');
    const rec = await this.host.mustGet(ref);
    try {
      const out = await readCriOutput(rec.logPath, SHIM_EXEC_OUTPUT_MAX_BYTES);
      return {
        stdoutBase64: out.stdout.toString('base64'),
        stderrBase64: out.stderr.toString('base64'),
        truncated: out.truncated,
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return { stdoutBase64: '', stderrBase64: '', truncated: false };
      throw err;
    }
  }
}

/**
 * True when the monitor `pid` has the file at `path` open (the same inode among its descriptors);
 * false when it has not, the path names nothing, or its descriptors cannot be read.
 */
async function monitorWritesTo(pid: number | undefined, path: string): Promise<boolean> {
  if (!pid || pid <= 0) return false;
  const target = await stat(path).catch(() => undefined);
  if (!target) return false;
  const dir = `/proc/${pid}/fd`;
  const fds = await readdir(dir).catch(() => [] as string[]);
  for (const fd of fds) {
    const st = await stat(join(dir, fd)).catch(() => undefined);
    if (st && st.ino === target.ino && st.dev === target.dev) return true;
  }
  return false;
}
