import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NativeRunResult, runNative, startNative } from './spawn-native.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-spawn-native-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** runNative, failing the test when the addon is not built (the package's build makes it). */
function run(
  file: string,
  env: NodeJS.ProcessEnv,
  input: string,
  timeoutMs = 10_000,
): Promise<NativeRunResult> {
  const p = runNative(file, env, input, timeoutMs);
  if (!p) throw new Error('build/spawn.node is not built (run the shim package build)');
  return p;
}

/** A script run by /bin/sh: the addon passes only the file as argv, so the script is the file. */
async function script(name: string, body: string): Promise<string> {
  const path = join(root, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

/** True once no process has this pid (a zombie counts as present: it was not reaped). */
function gone(pid: number): boolean {
  return !existsSync(`/proc/${pid}`);
}

/** Polls `cond` every 10 ms for at most 5 s. */
async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

describe('runNative (a helper run to its end off the event loop)', () => {
  it('feeds stdin, returns stdout, stderr and the exit status, with exactly the given environment', async () => {
    const file = await script('echo.sh', 'cat; echo "to stderr $ONLY" >&2; echo "home=$HOME"; exit 3');
    const r = await run(file, { ONLY: 'this' }, '{"cniVersion":"1.0.0"}\n');
    expect(r).toEqual({
      code: 3,
      signal: null,
      stdout: '{"cniVersion":"1.0.0"}\nhome=\n',
      stderr: 'to stderr this\n',
      timedOut: false,
    });
  });

  it('carries a large config through a child that reads it all, byte for byte', async () => {
    const input = 'abcdefghij'.repeat(200_000);
    const r = await run('/bin/cat', {}, input);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(input.length);
    expect(r.stdout === input).toBe(true);
  });

  it('names the signal that ended a child, and a child that never reads its stdin still runs', async () => {
    const file = await script('term.sh', 'kill -TERM $$');
    expect(await run(file, {}, 'x'.repeat(1 << 20))).toMatchObject({
      code: -1,
      signal: 'SIGTERM',
      timedOut: false,
    });
  });

  it('kills the whole process group after the deadline, what the child started included', async () => {
    const pidFile = join(root, 'bg.pid');
    const file = await script('hang.sh', `sleep 30 & echo $! > ${pidFile}; wait`);
    const t0 = Date.now();
    const r = await run(file, {}, '', 300);
    expect(r).toMatchObject({ timedOut: true, signal: 'SIGKILL' });
    expect(Date.now() - t0).toBeLessThan(5_000);
    const bg = Number(readFileSync(pidFile, 'utf8'));
    expect(await until(() => gone(bg))).toBe(true);
  });

  it('rejects like a spawn error when the file cannot be run', async () => {
    await expect(run(join(root, 'missing'), {}, '')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('startNative (a monitor started with socketpairs as its fds 2..)', () => {
  it('starts in the given directory with its fds 2 and 3 readable by the caller, and is reaped', async () => {
    const file = await script(
      'mon.sh',
      'echo "err line" >&2; pwd >&3; read -r x <&0 || echo "stdin empty" >&3',
    );
    const started = startNative(file, [], { PATH: '/usr/bin:/bin' }, root, 2);
    if (!started) throw new Error('build/spawn.node is not built (run the shim package build)');
    const { pid, fds } = await started;
    expect(fds).toHaveLength(2);
    const read = (fd: number) =>
      new Promise<string>((resolve) => {
        let s = '';
        const sock = new Socket({ fd, readable: true, writable: false });
        sock.setEncoding('utf8');
        sock.on('data', (d: string) => {
          s += d;
        });
        sock.on('close', () => resolve(s));
      });
    const [err, out] = await Promise.all([read(fds[0] as number), read(fds[1] as number)]);
    expect(err).toBe('err line\n');
    expect(out).toBe(`${root}\nstdin empty\n`);
    // Reaped by the addon's thread: no zombie is left behind.
    expect(await until(() => gone(pid))).toBe(true);
  });

  it('rejects like a spawn error when the directory does not exist', async () => {
    const started = startNative('/bin/true', [], {}, join(root, 'nowhere'), 2);
    await expect(started).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
