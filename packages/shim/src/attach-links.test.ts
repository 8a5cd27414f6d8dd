// conmon's attach-socket links in <runRoot>/monitors/s: one per task and exec, removed with them,
// and the dangling ones a removal while no agent ran left are removed when the agent starts.
import { lstat, readdir, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execPaths, taskPaths } from './domain/paths.js';
import { createTask, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'links';
let w: ShimWorld;
let socketDir: string;

beforeAll(async () => {
  w = await startWorld();
  socketDir = join(w.runRoot, 'monitors', 's');
});
afterAll(async () => {
  await w?.close();
});

const layout = () => hostLayout({ stateRoot: w.stateRoot, runRoot: w.runRoot });
const links = () => readdir(socketDir).catch(() => [] as string[]);

async function sleeper(): Promise<string> {
  return (await createTask(w, ns, ['sleep', '30'])).id;
}

async function remove(id: string): Promise<void> {
  await w.client.kill({ namespace: ns, id, signal: 'SIGKILL' });
  await w.client.wait({ namespace: ns, id });
  await w.client.delete({ namespace: ns, id });
}

describe('attach links', () => {
  it('removes the link of an exec with the exec, and the task link (and its execs) with the task', async () => {
    const id = await sleeper();
    const task = taskPaths(layout(), ns, id);
    expect(await readlink(join(socketDir, task.cuuid))).toBe(task.bundle);
    const exec = (execId: string) =>
      w.client.exec({
        namespace: ns,
        id,
        execId,
        process: { args: ['true'], env: ['PATH=/bin'], cwd: '/' },
        terminal: false,
        stdin: false,
      });
    await exec('e1');
    const e1 = execPaths(layout(), ns, id, 'e1');
    expect(await readlink(join(socketDir, e1.cuuid))).toBe(e1.dir);
    await w.client.start({ namespace: ns, id, execId: 'e1' });
    await w.client.wait({ namespace: ns, id, execId: 'e1' });
    await w.client.delete({ namespace: ns, id, execId: 'e1' });
    expect(await links()).not.toContain(e1.cuuid);
    // An exec still there when its task goes: its link goes with the task.
    await exec('e2');
    const e2 = execPaths(layout(), ns, id, 'e2');
    expect(await links()).toContain(e2.cuuid);
    await remove(id);
    expect(await links()).not.toContain(task.cuuid);
    expect(await links()).not.toContain(e2.cuuid);
  });

  it('removes dangling links when the agent starts and keeps those of live tasks', async () => {
    const live = await sleeper();
    const liveLink = taskPaths(layout(), ns, live).cuuid;
    // As an agent before the fix (or one killed between removing a bundle and its link) left them.
    for (const name of ['0123456789abcdef', 'fedcba9876543210']) {
      await symlink(join(w.stateRoot, 'tasks', ns, `gone-${name}`), join(socketDir, name));
    }
    expect(await links()).toEqual(expect.arrayContaining(['0123456789abcdef', 'fedcba9876543210', liveLink]));
    await w.killAgent();
    await w.startAgent();
    expect((await links()).sort()).toEqual([liveLink]);
    expect((await lstat(join(socketDir, liveLink))).isSymbolicLink()).toBe(true);
    await remove(live);
    expect(await links()).toEqual([]);
  });
});
