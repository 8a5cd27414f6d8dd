import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { BerthError, Code, type ShimCreateRequest, type ShimState, toBerthError } from '@berth/api';
import { redactArgs, withSpan } from '@berth/kit/tracing';
import { hostCgroupSupport } from '../cgroup-support.js';
import { shimMetrics } from '../metrics.js';
import { conmonArgs, spawnConmon } from '../runtime/conmon.js';
import { monitorAlive, readIntFile, readIntFileNow } from '../runtime/monitor.js';
import { mountAll, unmountAll } from '../runtime/mounts.js';
import { removeAttachLink } from './attach-links.js';
import { containerFilesDir, writeContainerFiles } from './container-files.js';
import { mountShareableShm } from './container-shm.js';
import type { ExitRecorder } from './exit-recorder.js';
import { touchLog, writeAtomicNow } from './files.js';
import type { ShimHost } from './host.js';
import { addDevices, addMappedDevices, hostDevices } from './host-devices.js';
import { applyCapabilities, applyUser } from './identity/index.js';
import { checkName, execPaths, taskPaths } from './paths.js';
import { checkBindPropagation } from './propagation.js';
import { checkRootfsMounts } from './rootfs-mounts.js';
import { applySeccomp } from './seccomp/index.js';
import { prepareSpec } from './spec.js';
import type { ProcRecord } from './store.js';
import { killProcessGroupOf, procKey, runtimeFailure, startTrace, until } from './util.js';

/** How long a task's monitor gets to exit once runc no longer runs its container, ms. */
export const MONITOR_GONE_WAIT_MS = 5_000;

/** What a caller of createTask adds to the request. */
export interface CreateOptions {
  /**
   * With `start`: awaited once the task is created and recorded, before it starts; a rejection
   * fails the create and removes the task (a pod network's ADD run beside `runc create`).
   */
  beforeStart?: () => Promise<void>;
  /**
   * With `start`: when the task must have started by: past it the create fails DEADLINE_EXCEEDED
   * and removes it, beforeStart no longer awaited. Default: startDeadline(host) at this call.
   */
  deadline?: StartDeadline;
}

/** When (performance.now()) a create's task must have started by, and the window it was set from. */
export interface StartDeadline {
  at: number;
  withinMs: number;
}

/**
 * The start deadline of a create arriving now: the host's own window, or its caller's time left
 * (`callerWithinMs`, ShimCreateRequest.startWithinMs) when that is shorter.
 */
export function startDeadline(host: ShimHost, callerWithinMs?: number): StartDeadline {
  const withinMs = Math.min(host.startWithinMs, callerWithinMs ?? Number.POSITIVE_INFINITY);
  return { at: performance.now() + withinMs, withinMs };
}

/**
 * Creates a task: writes the bundle (config.json, rootfs mounted from the given mounts), starts
 * conmon, which runs `runc create`, and records the task, `created`, once runc reported the init
 * pid. With `start` it is then started in the same call. On any failure (a start's included)
 * nothing is left behind: no bundle, no mount, no runc state, no record.
 */
export async function createTask(
  host: ShimHost,
  exits: ExitRecorder,
  req: ShimCreateRequest,
  opts: CreateOptions = {},
): Promise<ShimState> {
  const tIn = performance.now();
  const deadline = opts.deadline ?? startDeadline(host);
  const { namespace: ns, id } = req;
  checkName('namespace', ns);
  checkName('task id', id);
  if (req.logPath !== undefined && !req.logPath.startsWith('/')) {
    throw new BerthError(Code.INVALID_ARGUMENT, `task "${id}": logPath must be absolute`);
  }
  // Before anything is made: runc would create mount points inside whatever the rootfs is.
  await checkRootfsMounts(req.rootfs, host.layout.snapshots, id);
  const cgroups = await hostCgroupSupport();
  if (!(await host.store.reserveTask(ns, id))) {
    throw new BerthError(Code.ALREADY_EXISTS, `task "${id}" already exists in namespace "${ns}"`);
  }
  const p = taskPaths(host.layout, ns, id);
  // Until `start` records its own, the exit of a task that dies at once belongs to this request.
  const created = startTrace();
  const logPath =
    req.logPath ?? (req.files ? join(containerFilesDir(host.layout, ns, id), 'container.log') : p.defaultLog);
  // Once the record is stored, undoing the create removes it too (a start that failed).
  let recorded = false;
  try {
    return await host.serial(procKey(ns, id), async () => {
      const t0 = performance.now();
      await removeBundle(host, ns, id);
      // Inline, as the checks above: a mkdir is µs in the kernel, a thread-pool trip a wait
      // behind the pool's other work (up to 20 ms seen at load 12).
      mkdirSync(p.rootfs, { recursive: true });
      const { spec, warnings } = prepareSpec(req.spec, {
        ns,
        id,
        rootfs: req.rootfs.length ? p.rootfs : undefined,
        terminal: req.terminal,
        cgroups,
      });
      for (const w of warnings) host.log.warn({ ns, id }, w);
      // Facts of this node: its bounding set, then seccomp conditioned on the result.
      const caps = req.capabilities ? applyCapabilities(spec, req.capabilities, host.node) : undefined;
      if (req.seccomp) await applySeccomp(spec, req.seccomp);
      if (req.apparmor) await host.apparmor.apply(spec, req.apparmor);
      if (req.hostDevices) addDevices(spec, await hostDevices());
      if (req.devices?.length) await addMappedDevices(spec, req.devices);
      await checkBindPropagation(spec);
      await writeContainerFiles(host.layout, spec, { ns, id, files: req.files });
      // Kept when the create fails, as the files are: remove-files unmounts it.
      await mountShareableShm(host.layout, spec, { ns, id });
      const t1 = performance.now();
      if (req.rootfs.length) {
        await withSpan(
          'rootfs mount',
          {
            'berth.container.id': id,
            'berth.rootfs.type': req.rootfs.map((m) => m.type).join(','),
            'berth.rootfs.target': p.rootfs,
          },
          () => mountAll(req.rootfs, p.rootfs),
        );
      }
      const tMounted = performance.now();
      // Users are names in this rootfs's /etc/passwd: resolved once it is mounted, here.
      const user =
        req.user !== undefined
          ? applyUser(spec.process as Record<string, unknown>, req.user, {
              rootfs: (spec.root as { path: string }).path,
              task: id,
              home: true,
            })
          : undefined;
      const t2 = performance.now();
      await withSpan('bundle write', { 'berth.container.id': id, 'berth.bundle': p.bundle }, async () => {
        // Inline, as the mkdir above: each step is µs in the page cache, where a thread-pool trip
        // apiece (eight in a row) cost ~1 ms on an idle node.
        writeAtomicNow(p.config, JSON.stringify(spec));
        // Made before conmon opens it, so it has LOG_MODE (see files.ts).
        mkdirSync(dirname(logPath), { recursive: true });
        touchLog(logPath);
        mkdirSync(p.socketDir, { recursive: true });
        rmSync(p.persistDir, { recursive: true, force: true });
        mkdirSync(p.persistDir, { recursive: true });
        await exits.watchNamespace(ns);
        rmSync(join(p.exitDir, id), { force: true });
      });
      const t3 = performance.now();
      const noSyncLog = await host.skipLogSync();
      const runc = await host.runcForCreate();
      let pid: number;
      try {
        const monitor = {
          conmon: host.conmon,
          runc: runc.path,
          runcRoot: p.runcRoot,
          cid: id,
          cuuid: p.cuuid,
          dir: p.bundle,
          pidFile: p.pidFile,
          conmonPidFile: p.conmonPidFile,
          logPath,
          persistDir: p.persistDir,
          exitDir: p.exitDir,
          socketDir: p.socketDir,
          terminal: req.terminal,
          stdin: req.stdin,
          leaveStdinOpen: req.stdinOnce === false,
          noSyncLog,
        };
        const conmonAttrs = {
          'berth.container.id': id,
          'process.command': host.conmon,
          'process.command_args': [host.conmon, ...redactArgs(conmonArgs(monitor))],
          'berth.runc.sealed': runc.sealed,
        };
        // conmon runs `runc create` and reports the init pid on its sync pipe: that wait is runc's.
        pid = await withSpan('conmon start', conmonAttrs, () => {
          const mon = spawnConmon(monitor);
          const runcAttrs = {
            'berth.container.id': id,
            'process.command': host.runcBinary,
            'process.command_args': [host.runcBinary, 'create', '--bundle', p.bundle, id],
            'berth.runc.via': 'conmon',
          };
          return withSpan('runc create', runcAttrs, async (span) => {
            let outcome: 'ok' | 'error' = 'error';
            try {
              // Within the create's own deadline, so the caller hears why instead of its timeout;
              // past it conmon and the runc it runs are stopped (one process group), so a hung
              // runc cannot create the container later, after this create has cleaned up.
              const left = Math.max(1, deadline.at - performance.now());
              const msg = await mon.sync.next(Math.min(host.createTimeoutMs, left)).catch((err: unknown) => {
                if (toBerthError(err).code !== Code.DEADLINE_EXCEEDED) throw err;
                killProcessGroupOf(readIntFileNow(p.conmonPidFile), p.conmonPidFile);
                throw new BerthError(
                  Code.DEADLINE_EXCEEDED,
                  left <= host.createTimeoutMs
                    ? `task "${id}" not started: its runc create did not finish within ${deadline.withinMs} ms, past which its caller has given up`
                    : `task "${id}": runc create did not report within ${host.createTimeoutMs} ms`,
                );
              });
              // conmon reports runc's failure as a negative number (its exit status negated).
              span.setAttribute('process.exit.code', msg.data > 0 ? 0 : Math.abs(msg.data) || 1);
              if (msg.data <= 0) throw runtimeFailure(`task "${id}": runc create failed`, msg.message);
              span.setAttribute('process.pid', msg.data);
              outcome = 'ok';
              return msg.data;
            } finally {
              mon.sync.close();
              shimMetrics().runc('create', (performance.now() - t3) / 1000, outcome);
            }
          });
        });
      } finally {
        // conmon has executed runc by now (it reported, or the wait gave up): the path is not needed.
        runc.release();
      }
      const rec: ProcRecord = {
        namespace: ns,
        id,
        status: 'created',
        pid,
        monitorPid: readIntFileNow(p.conmonPidFile) ?? 0,
        dir: p.bundle,
        logPath,
        terminal: req.terminal,
        stdin: req.stdin,
        createdAt: new Date().toISOString(),
      };
      if (req.stdin && req.stdinOnce === false) rec.stdinKeep = true;
      if (ownPidNamespace(spec)) rec.ownPidNs = true;
      if (created.traceparent) rec.traceparent = created.traceparent;
      writeAtomicNow(p.meta, JSON.stringify(rec));
      await host.store.put(rec);
      recorded = true;
      const t4 = performance.now();
      // Started here, the task skips a second request and its wait for this agent's turn.
      if (req.start) {
        await beforeStart(id, deadline, opts.beforeStart);
      }
      const started = req.start ? await startCreatedTask(host, rec) : rec;
      const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
      const t5 = performance.now();
      host.log.info(
        {
          ns,
          id,
          task_pid: pid,
          monitor: rec.monitorPid,
          ms: {
            check: ms(tIn, t0),
            prepare: ms(t0, t1),
            mount: ms(t1, tMounted),
            user: ms(tMounted, t2),
            write: ms(t2, t3),
            monitor: ms(t3, t4),
            ...(req.start ? { start: ms(t4, t5) } : {}),
          },
        },
        req.start ? 'task created and started' : 'task created',
      );
      const state = host.toState(started);
      if (user) state.resolved = { user, ...(caps ? { capabilities: caps } : {}) };
      return state;
    });
  } catch (err) {
    await removeBundle(host, ns, id).catch((e: unknown) =>
      host.log.error({ err: e, ns, id }, 'cleaning up a failed create failed'),
    );
    // Only the per-task default: a container's kept log holds its earlier runs.
    if (logPath === p.defaultLog) await rm(logPath, { force: true });
    if (recorded) await host.store.removeTask(ns, id);
    else await host.store.releaseTask(ns, id);
    throw err;
  }
}

/**
 * Awaits a create's beforeStart, at most until its deadline: past it (before or while waiting) the
 * caller of the create has given up, and DEADLINE_EXCEEDED keeps its task from being started.
 */
async function beforeStart(
  id: string,
  deadline: StartDeadline,
  work: (() => Promise<void>) | undefined,
): Promise<void> {
  const late = () =>
    new BerthError(
      Code.DEADLINE_EXCEEDED,
      `task "${id}" not started: its create${work ? " (and its pod network's CNI ADD)" : ''} did not finish within ${deadline.withinMs} ms, past which its caller has given up`,
    );
  const left = deadline.at - performance.now();
  if (left <= 0) throw late();
  if (!work) return;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      work(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(late()), left);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts a task this call has just created and recorded (`created`): through runc's exec fifo
 * (see Runc.startCreated), then the record moves to `running`. An exit recorded in between
 * wins the record (the process ran and ended at once): it is returned as stored then.
 */
async function startCreatedTask(host: ShimHost, rec: ProcRecord): Promise<ProcRecord> {
  await host.runc(rec.namespace).startCreated(rec.id, rec.pid);
  const startedAt = new Date().toISOString();
  if (await host.move(rec, 'start', { startedAt })) return { ...rec, status: 'running', startedAt };
  return host.mustGet({ namespace: rec.namespace, id: rec.id });
}

/** Where a removeBundle spent its time, ms: runc delete (with the monitor's exit), unmount, files. */
export interface BundleRemoval {
  runc: number;
  unmount: number;
  files: number;
}

/**
 * Removes everything a task left on disk: runc's state (killing what still runs), the rootfs
 * mounts, the bundle and the exit file. Unmounting comes first so a removal can never reach
 * into a snapshot through a live mount. A task without a bundle is left as it is.
 */
export async function removeBundle(host: ShimHost, ns: string, id: string): Promise<BundleRemoval> {
  const p = taskPaths(host.layout, ns, id);
  const took: BundleRemoval = { runc: 0, unmount: 0, files: 0 };
  // Inline: every create asks this first, and most find no bundle.
  if (!existsSync(p.bundle)) return took;
  const t0 = performance.now();
  // The monitor's end is awaited beside runc's delete (it does not depend on it: a stopped task's
  // conmon is on its way out, a live one's follows runc's kill), and before the bundle it writes in goes.
  const conmonPid = await readIntFile(p.conmonPidFile);
  await Promise.all([
    host.runc(ns).delete(id, true),
    monitorAlive(conmonPid, p.conmonPidFile) &&
      until(async () => !monitorAlive(conmonPid, p.conmonPidFile), MONITOR_GONE_WAIT_MS),
  ]);
  const t1 = performance.now();
  await withSpan('rootfs unmount', { 'berth.container.id': id, 'berth.rootfs.target': p.rootfs }, () =>
    unmountAll(p.rootfs),
  );
  const t2 = performance.now();
  await withSpan('bundle remove', { 'berth.container.id': id, 'berth.bundle': p.bundle }, async () => {
    // The attach links of the task and of its execs point into the bundle: they go with it.
    const execIds = await readdir(p.execs).catch(() => [] as string[]);
    await Promise.all([
      ...execIds.map((execId) => removeAttachLink(p.socketDir, execPaths(host.layout, ns, id, execId).cuuid)),
      removeAttachLink(p.socketDir, p.cuuid),
      rm(join(p.exitDir, id), { force: true }),
      rm(p.persistDir, { recursive: true, force: true }),
    ]);
    await rm(p.bundle, { recursive: true, force: true });
  });
  const t3 = performance.now();
  took.runc = Math.round(t1 - t0);
  took.unmount = Math.round(t2 - t1);
  took.files = Math.round(t3 - t2);
  return took;
}

/** True when the spec gives the container a new PID namespace (a pid entry without a path). */
export function ownPidNamespace(spec: Record<string, unknown>): boolean {
  const linux = spec.linux as { namespaces?: { type?: string; path?: string }[] } | undefined;
  return (linux?.namespaces ?? []).some((n) => n.type === 'pid' && !n.path);
}
