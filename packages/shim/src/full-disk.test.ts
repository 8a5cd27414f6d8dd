import { spawnSync } from 'node:child_process';
import { rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTask, type ShimWorld, startWorld, waitForLog } from './testing/fixture.js';

// A process that exits while the state root's disk is full keeps its exit code. conmon writes
// its `exit` file to the persist dir before the exit dir and gives up at the first that fails:
// with the persist dir in the bundle (on the state root's disk), a full disk left no exit file
// anywhere, and the shim recorded 255 (MonitorLost) for a container that had exited 90 (the chaos
// run with disk fill, seed 1136100085).

const ns = 'full-disk';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld({ sweepMs: 200, stateTmpfsMb: 32 });
}, 60_000);
afterAll(async () => {
  await fillers.clear();
  await w?.close();
}, 60_000);

/** A shell that logs "ready", then exits with `code` on SIGTERM. */
const trapped = (code: number) =>
  `trap 'exit ${code}' TERM; echo ready; while :; do sleep 0.05 & wait $!; done`;

const fillers = {
  files: [] as string[],
  /** Fills the state root's file system until a write meets ENOSPC. */
  async fill() {
    const bulk = join(w.stateRoot, 'fill-bulk');
    const rest = join(w.stateRoot, 'fill-rest');
    this.files.push(bulk, rest);
    const fs = await statfs(w.stateRoot);
    const room = fs.bavail * fs.bsize - 256 * 1024;
    if (room > 0) spawnSync('fallocate', ['-l', String(room), bulk]);
    const dd = spawnSync('dd', ['if=/dev/zero', `of=${rest}`, 'bs=4k'], { encoding: 'utf8' });
    expect(dd.stderr).toContain('No space left');
  },
  async clear() {
    for (const f of this.files.splice(0)) await rm(f, { force: true });
  },
};

describe('exits on a full state disk', () => {
  it('a task and an exec that exit while the disk is full keep their exit codes', async () => {
    const { id, st } = await createTask(w, ns, ['sh', '-c', trapped(90)]);
    await waitForLog(st.logPath as string, 'ready');
    await w.client.exec({
      namespace: ns,
      id,
      execId: 'ex',
      process: { args: ['sh', '-c', trapped(91)], cwd: '/', env: ['PATH=/bin'] },
      terminal: false,
      stdin: false,
    });
    const ex = await w.client.start({ namespace: ns, id, execId: 'ex' });
    await waitForLog(ex.logPath as string, 'ready');

    await fillers.fill();
    await w.client.kill({ namespace: ns, id, execId: 'ex', signal: 'SIGTERM' });
    const execExit = await w.client.wait({ namespace: ns, id, execId: 'ex' }, { timeoutMs: 20_000 });
    await w.client.kill({ namespace: ns, id, signal: 'SIGTERM' });
    const taskExit = await w.client.wait({ namespace: ns, id }, { timeoutMs: 20_000 });
    await fillers.clear();

    expect({ code: execExit.exitCode, reason: execExit.reason }).toEqual({ code: 91, reason: undefined });
    expect({ code: taskExit.exitCode, reason: taskExit.reason }).toEqual({ code: 90, reason: undefined });
    const event = await w.nextExit((e) => e.id === id && !e.execId);
    expect(event.exitCode).toBe(90);

    await w.client.delete({ namespace: ns, id });
    expect((await w.client.list({})).tasks.map((t) => t.id)).not.toContain(id);
  }, 60_000);
});
