import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXEC_FIFO, startThroughFifo } from './exec-fifo.js';

let root: string;
let n = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-exec-fifo-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A container directory of a fake runc root holding an exec fifo. */
async function fifoDir(): Promise<{ id: string; path: string }> {
  const id = `c${++n}`;
  await mkdir(join(root, id));
  const path = join(root, id, EXEC_FIFO);
  execFileSync('mkfifo', ['-m', '0622', path]);
  return { id, path };
}

/** A process that behaves as runc's init at the barrier: `script` runs with the fifo as $1. */
function init(script: string, path: string): ChildProcess {
  return spawn('sh', ['-c', script, 'init', path], { stdio: 'ignore' });
}

const exited = (p: ChildProcess) =>
  new Promise<void>((resolve) => (p.exitCode !== null ? resolve() : p.once('exit', () => resolve())));

describe('startThroughFifo (runc start without runc)', () => {
  it('lets a waiting init go: reads its byte until it execs, then removes the fifo', async () => {
    const { id, path } = await fifoDir();
    // As runc's init: open for writing (blocks until a reader), write one byte, exec.
    const p = init('printf 0 > "$1"; exec sleep 0.2', path);
    expect(await startThroughFifo(root, id, p.pid as number)).toBe('started');
    expect(await stat(path).catch((e: NodeJS.ErrnoException) => e.code)).toBe('ENOENT');
    expect(p.exitCode).toBeNull();
    await exited(p);
  });

  it('counts a start whose process exits at once after its byte', async () => {
    const { id, path } = await fifoDir();
    const p = init('printf 0 > "$1"; exit 0', path);
    expect(await startThroughFifo(root, id, p.pid as number)).toBe('started');
    await exited(p);
  });

  it('fails FAILED_PRECONDITION when the init died before the start, and does not hang', async () => {
    const { id } = await fifoDir();
    const p = spawn('true', { stdio: 'ignore' });
    await exited(p);
    const err = await startThroughFifo(root, id, p.pid as number).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.FAILED_PRECONDITION);
    expect((err as BerthError).message).toContain('already dead');
  });

  it('fails when the writer closes without its byte (a container already started)', async () => {
    const { id, path } = await fifoDir();
    const p = init(': > "$1"; exec sleep 1', path);
    const err = await startThroughFifo(root, id, p.pid as number).catch((e: unknown) => e);
    expect((err as BerthError).code).toBe(Code.FAILED_PRECONDITION);
    expect((err as BerthError).message).toContain('already running');
    p.kill('SIGKILL');
    await exited(p);
  });

  it('gives up DEADLINE_EXCEEDED on a live init that never writes (a fifo left behind)', async () => {
    const { id } = await fifoDir();
    const p = spawn('sleep', ['30'], { stdio: 'ignore' });
    const err = await startThroughFifo(root, id, p.pid as number, 300).catch((e: unknown) => e);
    expect((err as BerthError).code).toBe(Code.DEADLINE_EXCEEDED);
    p.kill('SIGKILL');
    await exited(p);
  });

  it('answers no-fifo when the file is not there (the caller then runs runc start)', async () => {
    expect(await startThroughFifo(root, 'absent', process.pid)).toBe('no-fifo');
  });
});
