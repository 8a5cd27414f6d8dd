import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { monitorAlive, monitorStat } from './monitor.js';

// Stand-in monitors: scripts given conmon's arguments, under conmon's name or another one.
let dir: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-monitor-'));
  for (const name of ['conmon', 'podman-conmon']) {
    await writeFile(join(dir, name), '#!/bin/sh\nsleep 300 &\nwait\n');
    await chmod(join(dir, name), 0o755);
  }
});

afterEach(() => {
  for (const c of started.splice(0)) {
    try {
      if (c.pid) process.kill(-c.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs `file` with `args` (a group of its own) until the test ends; resolves with its pid once it runs. */
async function run(file: string, args: string[]): Promise<number> {
  const c = spawn(file, args, { stdio: 'ignore', detached: true });
  started.push(c);
  await new Promise((resolve, reject) => {
    c.once('spawn', resolve);
    c.once('error', reject);
  });
  return c.pid ?? 0;
}

describe('monitorAlive', () => {
  it('knows a monitor by its pid file, under any program name and either spelling of the option', async () => {
    const renamed = await run(join(dir, 'podman-conmon'), ['-c', 'x', '-P', '/run/x/conmon.pid']);
    expect(monitorAlive(renamed, '/run/x/conmon.pid')).toBe(true);
    const long = await run(join(dir, 'conmon'), ['--conmon-pidfile=/run/y/conmon.pid', '-c', 'y']);
    expect(monitorAlive(long, '/run/y/conmon.pid')).toBe(true);
    expect(monitorStat(long, '/run/y/conmon.pid')?.pgid).toBeGreaterThan(0);
    // The same file, spelled with another state root's slashes.
    const slashes = await run(join(dir, 'conmon'), ['-c', 'z', '-P', '/run//z/./conmon.pid']);
    expect(monitorAlive(slashes, '/run/z/conmon.pid')).toBe(true);
  });

  it('is false for a pid another process has: another program, another pid file, the file only named', async () => {
    const file = '/run/x/conmon.pid';
    const sleeper = await run('sleep', ['300']);
    // A conmon by name, but the monitor of another process (another task, an exec of the same task).
    const other = await run(join(dir, 'conmon'), ['-c', 'x', '-P', '/run/x/execs/e1/conmon.pid']);
    // The file as an argument, not as conmon's pid file: its container pid file, a reader of it.
    const pidOption = await run(join(dir, 'conmon'), ['-c', 'x', '-p', file]);
    const reader = await run('sh', ['-c', 'sleep 300; :', 'reader', file]);
    for (const pid of [sleeper, other, pidOption, reader]) expect(monitorAlive(pid, file)).toBe(false);
    expect(monitorAlive(0, file)).toBe(false);
    expect(monitorAlive(undefined, file)).toBe(false);
  });
});
