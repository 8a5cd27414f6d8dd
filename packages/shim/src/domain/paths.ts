import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import type { HostLayout } from '@berth/kit';

/** Namespace, task and exec ids become path components and runc ids: keep them to safe names. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$/;

/** Throws INVALID_ARGUMENT unless the name is safe as a path component and a runc id. */
export function checkName(kind: string, value: string): void {
  if (!SAFE_NAME.test(value)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid ${kind} "${value.slice(0, 80)}": use 1-128 of [A-Za-z0-9_.+-], not starting with a symbol`,
    );
  }
}

/** Short stable id for a monitor's attach-socket link (keeps the socket path under 108 bytes). */
function cuuid(...parts: string[]): string {
  return createHash('sha256').update(parts.join('/')).digest('hex').slice(0, 16);
}

/** What one namespace shares on the host: its runc root and the exit dir its monitors write to. */
export function namespacePaths(layout: HostLayout, ns: string) {
  return {
    runcRoot: join(layout.runc, ns),
    /** Watched with inotify: one file per exited task, named by id. */
    exitDir: join(layout.run.monitors, 'exits', ns),
    /** conmon's persist dirs of the namespace's tasks: persist/<ns>/<id>/{exit,oom,execs/<execId>/exit}. */
    persistRoot: join(layout.run.monitors, 'persist', ns),
  };
}

/** Where everything of one task lives on the host (documented in docs/layout.md, shim section). */
export function taskPaths(layout: HostLayout, ns: string, id: string) {
  const bundle = join(layout.tasks, ns, id);
  const socketDir = join(layout.run.monitors, 's');
  const uuid = cuuid(ns, id);
  // conmon writes `exit` to the persist dir first and gives up if that fails: on the run root
  // (a tmpfs), never on the state root's disk, whose filling up would lose the exit code.
  const persistDir = join(namespacePaths(layout, ns).persistRoot, id);
  return {
    bundle,
    rootfs: join(bundle, 'rootfs'),
    config: join(bundle, 'config.json'),
    /** The task's record as created (disk copy of the Redis hash, for adoption if Redis lost it). */
    meta: join(bundle, 'task.json'),
    pidFile: join(bundle, 'pid'),
    conmonPidFile: join(bundle, 'conmon.pid'),
    /** conmon's persist dir: `exit` and `oom` land there (removed with the task). */
    persistDir,
    exitFile: join(persistDir, 'exit'),
    oomFile: join(persistDir, 'oom'),
    /** Where a shim before the persist dir moved to the run root had conmon write them. */
    legacyExitFile: join(bundle, 'exit'),
    legacyOomFile: join(bundle, 'oom'),
    ctl: join(bundle, 'ctl'),
    execs: join(bundle, 'execs'),
    exitDir: namespacePaths(layout, ns).exitDir,
    socketDir,
    cuuid: uuid,
    attach: join(socketDir, uuid, 'attach'),
    runcRoot: namespacePaths(layout, ns).runcRoot,
    defaultLog: join(layout.containerLogs, ns, `${id}.log`),
  };
}
export type TaskPaths = ReturnType<typeof taskPaths>;

/** Where one exec process of a task lives: a directory inside the task's bundle. */
export function execPaths(layout: HostLayout, ns: string, id: string, execId: string) {
  const t = taskPaths(layout, ns, id);
  const dir = join(t.execs, execId);
  const uuid = cuuid(ns, id, execId);
  const persistDir = join(t.persistDir, 'execs', execId);
  return {
    dir,
    /** conmon's persist dir (on the run root, as the task's). */
    persistDir,
    spec: join(dir, 'process.json'),
    pidFile: join(dir, 'pid'),
    conmonPidFile: join(dir, 'conmon.pid'),
    exitFile: join(persistDir, 'exit'),
    legacyExitFile: join(dir, 'exit'),
    ctl: join(dir, 'ctl'),
    log: join(dir, 'log'),
    cuuid: uuid,
    attach: join(t.socketDir, uuid, 'attach'),
  };
}
export type ExecPaths = ReturnType<typeof execPaths>;

/**
 * The pid file of the monitor (conmon's -P) of a task's init or of one of its execs: what names
 * that monitor's process (see monitorStat), from the ids alone, so also after an agent restart.
 */
export function monitorPidFile(
  layout: HostLayout,
  ref: { namespace: string; id: string; execId?: string | undefined },
): string {
  return ref.execId
    ? execPaths(layout, ref.namespace, ref.id, ref.execId).conmonPidFile
    : taskPaths(layout, ref.namespace, ref.id).conmonPidFile;
}
