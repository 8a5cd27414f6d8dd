import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCriLine } from './cri-log.js';
import { monitorAlive } from './runtime/monitor.js';
import { createTask, newId, type ShimWorld, startWorld, waitForLog } from './testing/fixture.js';

const ns = 'recovery';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld({ sweepMs: 100 });
});
afterAll(async () => {
  await w?.close();
});

/** A task that logs "ready", then a tick every 50 ms, and exits with `code` once /tmp/go-<id> exists. */
async function gated(code: number) {
  const id = newId();
  const script = `echo ready; i=0; while [ ! -f /tmp/go-${id} ]; do i=$((i+1)); echo tick-$i; sleep 0.05; done; echo bye; exit ${code}`;
  const { st } = await createTask(w, ns, ['sh', '-c', script], { id });
  await waitForLog(st.logPath!, 'ready');
  const release = () => writeFile(join(w.rootfs, 'tmp', `go-${id}`), '');
  return { id, st, release };
}

/** conmon's exit file of a task (in its persist dir on the run root). */
const exitFile = (id: string, execId?: string) =>
  join(w.runRoot, 'monitors', 'persist', ns, id, ...(execId ? ['execs', execId] : []), 'exit');

/** Waits until conmon's exit file for a task exists: the exit really happened. */
async function exitFileOf(file: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (await stat(file).catch(() => undefined)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no exit file ${file}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the agent dies and comes back', () => {
  it('containers keep running through a SIGKILL of the agent group; an exit while it was down is reported with its code', async () => {
    const stay = await gated(0);
    const leave = await gated(9);
    const execTask = await gated(0);
    await w.client.exec({
      namespace: ns,
      id: execTask.id,
      execId: 'ex',
      process: {
        args: ['sh', '-c', `while [ ! -f /tmp/go-ex-${execTask.id} ]; do sleep 0.05; done; exit 4`],
        cwd: '/',
        env: ['PATH=/bin'],
      },
      terminal: false,
      stdin: false,
    });
    await w.client.start({ namespace: ns, id: execTask.id, execId: 'ex' });

    await w.killAgent();
    // Everything still runs without the agent, monitors included.
    for (const t of [stay, leave, execTask]) {
      expect(alive(t.st.pid)).toBe(true);
      expect(monitorAlive(t.st.monitorPid, join(t.st.bundle!, 'conmon.pid'))).toBe(true);
    }
    const logBefore = (await readFile(stay.st.logPath!, 'utf8')).length;
    await leave.release();
    await writeFile(join(w.rootfs, 'tmp', `go-ex-${execTask.id}`), '');
    await exitFileOf(exitFile(leave.id));
    await exitFileOf(exitFile(execTask.id, 'ex'));
    // conmon kept writing the log while no agent ran.
    await waitForLog(
      stay.st.logPath!,
      `tick-${(await readFile(stay.st.logPath!, 'utf8')).split('\n').length + 2}`,
    );
    expect((await readFile(stay.st.logPath!, 'utf8')).length).toBeGreaterThan(logBefore);

    await w.startAgent();
    const exit = await w.nextExit((e) => e.id === leave.id);
    expect(exit).toMatchObject({ exitCode: 9, namespace: ns });
    const fileTime = (await stat(exitFile(leave.id))).mtime.toISOString();
    expect(exit.exitedAt).toBe(fileTime);
    expect(await w.client.wait({ namespace: ns, id: leave.id })).toMatchObject({ exitCode: 9 });
    expect(await w.nextExit((e) => e.id === execTask.id && e.execId === 'ex')).toMatchObject({ exitCode: 4 });

    const st = await w.client.state({ namespace: ns, id: stay.id });
    expect(st).toMatchObject({ status: 'running', pid: stay.st.pid });
    // The new agent still supervises it: its exit is seen live.
    await stay.release();
    expect(await w.client.wait({ namespace: ns, id: stay.id })).toMatchObject({ exitCode: 0 });
    const lines = (await readFile(stay.st.logPath!, 'utf8')).trimEnd().split('\n').map(parseCriLine);
    expect(lines.at(-1)?.content).toBe('bye');
    for (const t of [stay, leave]) await w.client.delete({ namespace: ns, id: t.id });
    await w.client.kill({ namespace: ns, id: execTask.id, signal: 'KILL', all: true });
    await w.client.wait({ namespace: ns, id: execTask.id });
    await w.client.delete({ namespace: ns, id: execTask.id });
  });

  it('a graceful stop of the agent (SIGTERM) leaves tasks running; the next agent takes them over', async () => {
    const t = await gated(5);
    expect(await w.stopAgent()).toBe(0);
    expect(alive(t.st.pid)).toBe(true);
    expect(monitorAlive(t.st.monitorPid, join(t.st.bundle!, 'conmon.pid'))).toBe(true);
    await w.startAgent();
    await t.release();
    expect(await w.client.wait({ namespace: ns, id: t.id })).toMatchObject({ exitCode: 5 });
    await w.client.delete({ namespace: ns, id: t.id });
  });

  it('an exit at the moment the agent dies is persisted once and announced', async () => {
    const t = await gated(3);
    await t.release();
    await w.killAgent();
    await exitFileOf(exitFile(t.id));
    await w.startAgent();
    expect(await w.client.wait({ namespace: ns, id: t.id })).toMatchObject({ exitCode: 3 });
    expect(await w.nextExit((e) => e.id === t.id)).toMatchObject({ exitCode: 3 });
    await w.client.delete({ namespace: ns, id: t.id });
  });

  it('Redis lost everything while the agent was down: tasks are adopted from their bundles, not killed', async () => {
    const t = await gated(8);
    const done = await gated(2);
    await w.killAgent();
    await done.release();
    await exitFileOf(exitFile(done.id));
    await w.redisFlush();
    await w.startAgent();
    expect(await w.client.state({ namespace: ns, id: t.id })).toMatchObject({
      status: 'running',
      pid: t.st.pid,
    });
    expect(alive(t.st.pid)).toBe(true);
    expect(await w.client.wait({ namespace: ns, id: done.id })).toMatchObject({ exitCode: 2 });
    await t.release();
    expect(await w.client.wait({ namespace: ns, id: t.id })).toMatchObject({ exitCode: 8 });
    for (const x of [t, done]) await w.client.delete({ namespace: ns, id: x.id });
  });

  it('Redis restarted (AOF): records survive and an exit during the restart is not lost', async () => {
    const t = await gated(6);
    const other = await gated(0);
    await t.release();
    await w.redisRestart();
    expect(await w.client.wait({ namespace: ns, id: t.id }, { timeoutMs: 20_000 })).toMatchObject({
      exitCode: 6,
    });
    expect(await w.client.state({ namespace: ns, id: other.id })).toMatchObject({ status: 'running' });
    await other.release();
    expect(await w.client.wait({ namespace: ns, id: other.id })).toMatchObject({ exitCode: 0 });
    for (const x of [t, other]) await w.client.delete({ namespace: ns, id: x.id });
  });

  it('an exit file where an older agent had conmon write it (the bundle) is read; persist dirs of no task are removed at start', async () => {
    const t = await gated(42);
    await w.killAgent();
    // The monitor goes without writing an exit file, as if it wrote only where an older agent
    // pointed it: its bundle.
    process.kill(t.st.monitorPid!, 'SIGKILL');
    await t.release();
    while (alive(t.st.pid)) await new Promise((r) => setTimeout(r, 20));
    await writeFile(join(t.st.bundle!, 'exit'), '42');
    const orphan = join(w.runRoot, 'monitors', 'persist', ns, newId());
    await mkdir(orphan, { recursive: true });
    await w.startAgent();
    expect(await w.client.wait({ namespace: ns, id: t.id })).toMatchObject({ exitCode: 42 });
    expect(await stat(orphan).catch(() => 'gone')).toBe('gone');
    await w.client.delete({ namespace: ns, id: t.id });
    expect(await stat(join(w.runRoot, 'monitors', 'persist', ns, t.id)).catch(() => 'gone')).toBe('gone');
  });

  it('a monitor killed while the agent runs: the task turns unknown, then exit 255 MonitorLost once runc sees it stopped', async () => {
    const t = await gated(0);
    process.kill(t.st.monitorPid!, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while ((await w.client.state({ namespace: ns, id: t.id })).status !== 'unknown') {
      if (Date.now() > deadline) throw new Error('the sweep never noticed the dead monitor');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(alive(t.st.pid)).toBe(true);
    expect(await w.client.kill({ namespace: ns, id: t.id, signal: 'KILL', all: true })).toEqual({
      delivered: true,
    });
    expect(await w.client.wait({ namespace: ns, id: t.id })).toMatchObject({
      exitCode: 255,
      reason: 'MonitorLost',
    });
    await w.client.delete({ namespace: ns, id: t.id });
  });
});
