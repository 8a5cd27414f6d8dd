import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killProcessGroupOf } from './util.js';

// A stand-in monitor: a script with conmon's -P argument, in a session of its own as conmon is,
// with a child in its group as conmon's runc is.
let dir: string;
const started: ChildProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-pgroup-'));
  for (const name of ['conmon', 'conmon-2.1.13']) {
    writeFileSync(join(dir, name), '#!/bin/sh\nsleep 300 &\nwait\n');
    chmodSync(join(dir, name), 0o755);
  }
});

afterEach(() => {
  for (const c of started.splice(0)) if (c.pid) killQuietly(-c.pid);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/**
 * Starts `name` as a group leader with `option pidFile` among its arguments (conmon's -P unless
 * told); resolves once it runs.
 */
async function monitor(
  name: string,
  pidFile: string,
  option = '-P',
): Promise<{ pid: number; exited: Promise<NodeJS.Signals | null> }> {
  const c = spawn(join(dir, name), [option, pidFile], { detached: true, stdio: 'ignore' });
  started.push(c);
  await new Promise((resolve, reject) => {
    c.once('spawn', resolve);
    c.once('error', reject);
  });
  return { pid: c.pid ?? 0, exited: new Promise((r) => c.once('exit', (_code, signal) => r(signal))) };
}

/**
 * The signal `m` dies of when it is sent SIGTERM now: SIGKILL if one was sent to it before (the
 * kernel acts on a SIGKILL as it is sent), SIGTERM if none was.
 */
async function endedBy(m: { pid: number; exited: Promise<NodeJS.Signals | null> }): Promise<string | null> {
  try {
    process.kill(m.pid, 'SIGTERM');
  } catch {
    // gone already: its exit says of what
  }
  return m.exited;
}

describe('killProcessGroupOf', () => {
  it('ends the group of the monitor whose command line names the pid file, whatever its name', async () => {
    const m = await monitor('conmon', '/run/x/conmon.pid');
    killProcessGroupOf(m.pid, '/run/x/conmon.pid');
    expect(await m.exited).toBe('SIGKILL');
    // A conmon installed under another name (services.shim.conmon takes any path).
    const renamed = await monitor('conmon-2.1.13', '/run/y/conmon.pid');
    killProcessGroupOf(renamed.pid, '/run/y/conmon.pid');
    expect(await renamed.exited).toBe('SIGKILL');
  });

  it('leaves alone a process that got the pid since: another pid file, one that only starts alike, the file not as -P', async () => {
    const other = await monitor('conmon', '/run/other-task/conmon.pid');
    killProcessGroupOf(other.pid, '/run/x/conmon.pid');
    const alike = await monitor('conmon', '/run/x/conmon.pid.old');
    killProcessGroupOf(alike.pid, '/run/x/conmon.pid');
    // The file as the value of another option (conmon's -p is the container's pid file).
    const named = await monitor('conmon', '/run/x/conmon.pid', '-p');
    killProcessGroupOf(named.pid, '/run/x/conmon.pid');
    expect(await endedBy(other)).toBe('SIGTERM');
    expect(await endedBy(alike)).toBe('SIGTERM');
    expect(await endedBy(named)).toBe('SIGTERM');
  });
});
