import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { type ProcStat, parseProcStat, procStatNow } from '@berth/kit/pid-alive';

/** The /proc/<pid>/stat of a process; undefined when it is gone. */
export async function procStat(pid: number): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Whether a command line is that of the conmon writing its pid to `conmonPidFile` (its `-P`,
 * `--conmon-pidfile`). That file names one monitored process, a task's init or one exec (the
 * bundle's or the exec directory's conmon.pid), where conmon's `-c` is shared by a task and its
 * execs; and it is derived from the task's ids, so an agent that restarted finds it again. The
 * program's name is not looked at: services.shim.conmon may install conmon under any name. Paths
 * are compared normalized (a state root spelled with a trailing or doubled slash by one version's
 * settings and not another's is the same directory).
 */
export function isMonitorCommand(argv: readonly string[], conmonPidFile: string): boolean {
  const want = posix.normalize(conmonPidFile);
  const same = (p: string | undefined) => p !== undefined && posix.normalize(p) === want;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if ((a === '-P' || a === '--conmon-pidfile') && same(argv[i + 1])) return true;
    if (a.startsWith('--conmon-pidfile=') && same(a.slice('--conmon-pidfile='.length))) return true;
  }
  return false;
}

/**
 * The /proc stat of process `pid` while it is the monitor (conmon) whose pid file is
 * `conmonPidFile` (see isMonitorCommand); undefined when no process has the pid, when it is a
 * zombie (exited, not yet reaped by whoever inherited it), or when the pid now belongs to another
 * process. The stat is read on both sides of the command line, with the same start time, so
 * the command line read is that of the process the stat describes.
 */
export function monitorStat(pid: number | undefined, conmonPidFile: string): ProcStat | undefined {
  if (!pid || pid <= 0) return undefined;
  const st = procStatNow(pid);
  if (st === undefined || st.state === 'Z' || st.state === 'X') return undefined;
  if (!isMonitorCommand(commandLineOf(pid), conmonPidFile)) return undefined;
  return procStatNow(pid)?.start === st.start ? st : undefined;
}

/** True while the monitor of one process runs: `pid` is the conmon whose pid file is `conmonPidFile`. */
export function monitorAlive(pid: number | undefined, conmonPidFile: string): boolean {
  return monitorStat(pid, conmonPidFile) !== undefined;
}

/** The arguments of process `pid` (argv[0] first); none when it is gone or a zombie. */
function commandLineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Reads a small integer file (pid files, exit files); undefined when absent or not yet complete. */
export async function readIntFile(path: string): Promise<number | undefined> {
  try {
    const t = (await readFile(path, 'utf8')).trim();
    if (!/^-?\d+$/.test(t)) return undefined;
    return Number(t);
  } catch {
    return undefined;
  }
}

/**
 * readIntFile done inline: a few µs for a pid file conmon has just written (page cache), where
 * readFile's four thread-pool trips wait behind whatever else the pool runs (tens of ms under
 * load, on the path of every task create).
 */
export function readIntFileNow(path: string): number | undefined {
  try {
    const t = readFileSync(path, 'utf8').trim();
    if (!/^-?\d+$/.test(t)) return undefined;
    return Number(t);
  } catch {
    return undefined;
  }
}

/**
 * Watches one directory with inotify and reports the names that appear or change in it, then the
 * names already there (so a file written before the watch began is never missed).
 */
export class DirWatcher {
  private watcher: FSWatcher | undefined;

  constructor(
    readonly dir: string,
    private readonly onName: (name: string) => void,
  ) {}

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    this.watcher = watch(this.dir, { persistent: false }, (_event, name) => {
      if (name) this.onName(name.toString());
    });
    this.watcher.on('error', () => undefined);
    for (const name of await readdir(this.dir)) this.onName(name);
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
