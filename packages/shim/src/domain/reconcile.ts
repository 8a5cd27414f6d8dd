import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassBackoff } from '@berth/kit';
import type { RuncState } from '../runtime/runc.js';
import { sweepAttachLinks } from './attach-links.js';
import type { ExitRecorder } from './exit-recorder.js';
import { exists } from './files.js';
import type { ShimHost } from './host.js';
import { taskPaths } from './paths.js';
import { allows } from './process-state.js';
import type { ProcRecord } from './store.js';
import { removeBundle } from './task-bundle.js';
import { killMonitor, procKey } from './util.js';

/** The sweep's interval when none is set (the default of services.shim.sweepMs), ms. */
export const DEFAULT_SWEEP_MS = 10_000;

/** The longest a task whose runc state keeps failing waits between tries, ms. */
const RUNC_BACKOFF_MAX_MS = 5 * 60_000;

/** The answer of a runc state that failed and is backed off: nothing is known this pass. */
const UNKNOWN = Symbol('unknown');

/** What is logged when runc cannot tell a task's state, by why it was asked. */
const RUNC_FAILED = {
  'monitor-gone': 'runc cannot tell the state of a task whose monitor is gone: trying again later',
  adopt: 'runc cannot tell the state of a task adopted from its bundle: taken as running for now',
} as const;

/**
 * Brings the agent's records in line with the host: once at start (recover) and then periodically
 * (sweep), so that exits, monitors that vanished and half-done creates are all accounted for.
 */
export class Reconciler {
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** Tasks whose runc state failed, tried again after a growing number of passes. */
  private readonly runcBackoff = new PassBackoff({
    maxWaitMs: RUNC_BACKOFF_MAX_MS,
    intervalMs: DEFAULT_SWEEP_MS,
  });

  constructor(
    private readonly host: ShimHost,
    private readonly exits: ExitRecorder,
  ) {}

  /**
   * Finds every task again after a (re)start: watches each namespace's exit dir (which also
   * handles exit files written while no agent ran), records exits whose monitor vanished without
   * one, re-announces persisted exits never announced, and removes what a create that crashed
   * half-way left on disk.
   */
  async recover(): Promise<{ tasks: number; exited: number; cleaned: number }> {
    let tasks = 0;
    let exited = 0;
    let cleaned = 0;
    const known = new Set<string>();
    for (const { namespace: ns, id } of await this.host.store.taskRefs()) {
      known.add(procKey(ns, id));
      const rec = await this.host.store.get(ns, id);
      if (!rec) {
        // Claimed but not recorded: runc created it but the record was lost (adopt it), or a
        // create died half-way (remove what it left).
        if (await this.adopt(ns, id, true)) {
          tasks++;
          continue;
        }
        await removeBundle(this.host, ns, id);
        await this.host.store.releaseTask(ns, id);
        cleaned++;
        continue;
      }
      tasks++;
      await this.exits.watchNamespace(ns);
      const before = rec.status;
      await this.host.serial(procKey(ns, id), () => this.reconcile(ns, id, true));
      if (before !== 'stopped' && (await this.host.store.get(ns, id))?.status === 'stopped') exited++;
    }
    for (const ns of await readdir(this.host.layout.tasks).catch(() => [] as string[])) {
      for (const id of await readdir(join(this.host.layout.tasks, ns)).catch(() => [] as string[])) {
        if (known.has(procKey(ns, id))) continue;
        if (await this.adopt(ns, id, false)) {
          tasks++;
          continue;
        }
        this.host.log.warn(
          { ns, id },
          'removing a bundle no record claims (a create interrupted by a crash)',
        );
        await removeBundle(this.host, ns, id);
        cleaned++;
      }
    }
    // Links of tasks and execs removed while no agent ran (or by one that died half-way).
    const links = await sweepAttachLinks(join(this.host.layout.run.monitors, 's'));
    if (links.length > 0) this.host.log.info({ links: links.length }, 'removed dangling attach links');
    cleaned += links.length + (await this.sweepPersistDirs());
    return { tasks, exited, cleaned };
  }

  /** Removes conmon persist dirs whose task has no bundle any more (removed by an agent that died). */
  private async sweepPersistDirs(): Promise<number> {
    let n = 0;
    const root = join(this.host.layout.run.monitors, 'persist');
    for (const ns of await readdir(root).catch(() => [] as string[])) {
      for (const id of await readdir(join(root, ns)).catch(() => [] as string[])) {
        const p = taskPaths(this.host.layout, ns, id);
        if (await exists(p.bundle)) continue;
        await rm(p.persistDir, { recursive: true, force: true });
        n++;
      }
    }
    return n;
  }

  /**
   * Takes back a task whose bundle is complete (its task.json was written once runc created it) but
   * whose Redis record is gone (Redis lost its data): the record is rebuilt from the bundle, then
   * reconciled like any other, so a running container is not killed and an exit file is reported.
   * A bundle without task.json is a create cut short and is not adopted. A task runc cannot tell
   * the state of (a broken state.json) is adopted as running: the failure is logged once and backed
   * off as the sweep's are (see runcState), and recovery goes on with the other tasks.
   */
  private async adopt(ns: string, id: string, claimed: boolean): Promise<boolean> {
    const p = taskPaths(this.host.layout, ns, id);
    let rec: ProcRecord;
    try {
      rec = JSON.parse(await readFile(p.meta, 'utf8')) as ProcRecord;
    } catch {
      return false;
    }
    if (rec.namespace !== ns || rec.id !== id) return false;
    const rs = await this.runcState(rec, 'adopt');
    rec.status =
      rs !== UNKNOWN && rs && (rs.status === 'created' || rs.status === 'paused') ? rs.status : 'running';
    if (!claimed && !(await this.host.store.reserveTask(ns, id))) return true;
    await this.host.store.put(rec);
    this.host.log.warn({ ns, id, status: rec.status }, 'adopted a task Redis had no record of');
    await this.exits.watchNamespace(ns);
    await this.host.serial(procKey(ns, id), () => this.reconcile(ns, id, true));
    return true;
  }

  /**
   * Brings one task's record in line with what is on the host: an exit file not yet recorded is
   * recorded; a monitor gone without one means exit 255 (`MonitorLost`) once runc no longer runs the
   * task (while runc still does, the task is `unknown`: nothing can see its exit); a persisted exit
   * never announced is announced. The same for its execs.
   */
  private async reconcile(ns: string, id: string, startup: boolean): Promise<void> {
    await this.exits.handleExit(ns, id);
    const now = await this.host.store.get(ns, id);
    if (now && now.status !== 'stopped' && !this.host.monitorAlive(now)) await this.monitorGone(ns, id);
    for (const execId of await this.host.store.execIds(ns, id))
      await this.reconcileExec(ns, id, execId, startup);
  }

  /** A task's monitor is gone: its exit file is read, else runc tells whether the task still runs. */
  private async monitorGone(ns: string, id: string): Promise<void> {
    // conmon writes the exit file just before it exits: read again now that it is gone.
    await this.exits.handleExit(ns, id);
    const now = await this.host.store.get(ns, id);
    if (!now || now.status === 'stopped') return;
    const rs = await this.runcState(now, 'monitor-gone');
    // runc failed: the task is looked at again in a later pass.
    if (rs === UNKNOWN) return;
    if (!rs || rs.status === 'stopped') await this.exits.recordLost(now, 'MonitorLost');
    else if (allows('task', now.status, 'lose-monitor')) {
      this.host.log.error(
        { ns, id, runc: rs.status },
        'monitor of a live task is gone: its exit cannot be seen',
      );
      await this.host.move(now, 'lose-monitor');
    }
  }

  /**
   * runc's state of a task whose monitor is gone or that is being adopted, or UNKNOWN when runc
   * failed (runc cannot read its state: a broken state.json, a runc that hangs). Such a failure
   * does not stop the pass or the recovery (the other tasks and this one's execs are still
   * reconciled), and it is not retried every pass: the task waits 1, 2, 4 ... passes (at most
   * RUNC_BACKOFF_MAX_MS) and each try is logged once; a success, or another task under the id,
   * starts afresh. A failure at startup counts as pass 0's. Redis failing is not runc's: it fails
   * the pass, which the next one retries, as before.
   */
  private async runcState(
    rec: ProcRecord,
    why: keyof typeof RUNC_FAILED,
  ): Promise<RuncState | undefined | typeof UNKNOWN> {
    const { namespace: ns, id } = rec;
    const key = procKey(ns, id);
    const subject = `${rec.createdAt}/${rec.monitorPid}`;
    if (!this.runcBackoff.due(key, subject)) return UNKNOWN;
    let rs: RuncState | undefined;
    try {
      rs = await this.host.runc(ns).state(id);
    } catch (err) {
      const { failures, waitPasses } = this.runcBackoff.failed(key, subject);
      this.host.log.error({ err, ns, id, failures, retryInPasses: waitPasses }, RUNC_FAILED[why]);
      return UNKNOWN;
    }
    const failures = this.runcBackoff.succeeded(key);
    if (failures > 0) this.host.log.info({ ns, id, failures }, 'runc tells the state of the task again');
    return rs;
  }

  private async reconcileExec(ns: string, id: string, execId: string, startup: boolean): Promise<void> {
    const rec = await this.host.store.get(ns, id, execId);
    if (!rec) {
      if (startup) await this.host.store.releaseExec(ns, id, execId);
      return;
    }
    if (rec.status === 'stopped') {
      await this.exits.announce(ns, id, execId);
      return;
    }
    if (rec.status === 'created') {
      // Prepared by this agent: it waits for start. Prepared by a dead agent: its start pipe is
      // gone and conmon would run it unasked, so it is ended.
      if (!startup) return;
      if (this.host.monitorAlive(rec)) killMonitor(rec.monitorPid);
      await this.exits.handleExit(ns, id, execId);
      if ((await this.host.store.get(ns, id, execId))?.status !== 'stopped')
        await this.exits.recordLost(rec, 'AgentRestarted');
      return;
    }
    await this.exits.watchExec(ns, id, execId);
    await this.exits.handleExit(ns, id, execId);
    const now = await this.host.store.get(ns, id, execId);
    if (now && now.status !== 'stopped' && !this.host.monitorAlive(now)) {
      await this.exits.handleExit(ns, id, execId);
      if ((await this.host.store.get(ns, id, execId))?.status !== 'stopped')
        await this.exits.recordLost(now, 'MonitorLost');
    }
  }

  /**
   * One pass over every live task while the agent runs: catches what inotify cannot (a monitor
   * killed before it wrote an exit file, an overflowed inotify queue).
   */
  async sweep(): Promise<void> {
    this.runcBackoff.beginPass();
    const refs = await this.host.store.taskRefs();
    this.runcBackoff.retain(new Set(refs.map((r) => procKey(r.namespace, r.id))));
    for (const { namespace: ns, id } of refs) {
      if (this.stopped) return;
      const rec = await this.host.store.get(ns, id);
      if (!rec) continue; // a create in progress
      if (rec.status === 'stopped' && rec.exitPublished) continue;
      await this.host.serial(procKey(ns, id), () => this.reconcile(ns, id, false));
    }
  }

  /** Runs sweep() every intervalMs until close(). */
  startSweeper(intervalMs: number): void {
    this.runcBackoff.setInterval(intervalMs);
    const tick = () => {
      if (this.stopped) return;
      this.sweep()
        .catch((err: unknown) => this.host.log.error({ err }, 'sweep failed'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, intervalMs).unref();
        });
    };
    this.timer = setTimeout(tick, intervalMs).unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
