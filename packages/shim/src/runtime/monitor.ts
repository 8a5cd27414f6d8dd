import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { type ProcStat, parseProcStat } from '@berth/kit/pid-alive';

/** The /proc/<pid>/stat of a process; undefined when it is gone. */
export async function procStat(pid: number): Promise<ProcStat | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * True while the monitor (conmon) with this pid runs. A zombie (state Z: exited, not yet reaped
 * by whoever inherited it) counts as gone, and so does a pid reused by another program.
 */
export async function monitorAlive(pid: number): Promise<boolean> {
  if (!pid || pid <= 0) return false;
  const st = await procStat(pid);
  return st !== undefined && st.comm === 'conmon' && st.state !== 'Z' && st.state !== 'X';
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
