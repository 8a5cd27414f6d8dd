import { readFileSync } from 'node:fs';

/** True while a process with this pid exists (one of another user's counts: EPERM). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What berth reads of a process's /proc/<pid>/stat: command, state letter, process group, start. */
export interface ProcStat {
  comm: string;
  state: string;
  pgid: number;
  /** When it started (clock ticks after boot, field 22): with the pid, it names one process. */
  start: string;
}

/** Parses /proc/<pid>/stat (proc(5)): the command is in parentheses and may hold spaces and ")". */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(')');
  // After the command, from field 3: state, ppid, pgrp, ... starttime (field 22).
  const rest = text.slice(close + 2).split(' ');
  return {
    comm: text.slice(text.indexOf('(') + 1, close),
    state: rest[0] ?? '',
    pgid: Number(rest[2]),
    start: rest[19] ?? '',
  };
}

/** The /proc/<pid>/stat of a process read inline; undefined when it is gone. */
export function procStatNow(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * When process `pid` started (see ProcStat.start), or undefined when no such process exists. A
 * later process given the same pid has another start.
 */
export function processStart(pid: number): string | undefined {
  return procStatNow(pid)?.start;
}
