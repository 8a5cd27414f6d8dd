import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, Code } from '@berth/api';
import { STACK_SERVICES } from './plan.js';

/**
 * Programs whose output `berth up` keeps under services/: the services, the supervisor, the
 * co-hosted process (its own lines; its services keep their own files), the servers.
 */
export const LOGGED = [...STACK_SERVICES, 'supervisor', 'cohosted', 'nats-server', 'redis-server'] as const;

/** Most bytes read from the end of a log to find its last lines. */
const TAIL_WINDOW = 4 * 1024 * 1024;

/**
 * Picks the log file of one program: `<name>.log`, or `<name>-<replica>.log` for a service run
 * with replicas (replica 1 when none is named).
 */
export function serviceLogPath(serviceLogs: string, name: string, replica?: number): string {
  if (!(LOGGED as readonly string[]).includes(name)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `unknown service "${name}" (one of ${LOGGED.join(', ')})`);
  }
  const numbered = join(serviceLogs, `${name}-${replica ?? 1}.log`);
  const single = join(serviceLogs, `${name}.log`);
  if (replica !== undefined) {
    if (existsSync(numbered)) return numbered;
    if (replica === 1 && existsSync(single)) return single;
    throw new BerthError(Code.NOT_FOUND, `no log for replica ${replica} of "${name}" in ${serviceLogs}`);
  }
  if (existsSync(single)) return single;
  if (existsSync(numbered)) return numbered;
  throw new BerthError(Code.NOT_FOUND, `no log for "${name}" in ${serviceLogs} (does berth up run it here?)`);
}

function readRange(file: string, start: number, end: number): Buffer {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, start + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** The last `lines` lines of a file (all of it when `lines` is undefined), and where it ended. */
export function tailLines(file: string, lines: number | undefined): { text: string; end: number } {
  const size = statSync(file).size;
  const start = lines === undefined ? 0 : Math.max(0, size - TAIL_WINDOW);
  const text = readRange(file, start, size).toString('utf8');
  if (lines === undefined) return { text, end: size };
  const all = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  const kept = lines === 0 ? [] : all.slice(-lines);
  return { text: kept.length ? `${kept.join('\n')}\n` : '', end: size };
}

/**
 * Writes new output as it is appended, until `signal` aborts (or the process is interrupted).
 * Starts over from the beginning of the file when it was replaced (rotated to `.1`).
 */
export async function follow(
  file: string,
  from: number,
  write: (s: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  let pos = from;
  let ino = statSync(file).ino;
  while (!signal?.aborted) {
    await sleep(250);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(file);
    } catch {
      continue; // between rotation and the new file
    }
    if (st.ino !== ino || st.size < pos) {
      ino = st.ino;
      pos = 0;
    }
    if (st.size > pos) {
      write(readRange(file, pos, st.size).toString('utf8'));
      pos = st.size;
    }
  }
}
