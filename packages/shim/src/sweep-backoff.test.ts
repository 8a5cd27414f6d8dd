// A task runc cannot read (its state.json broken by hand under the agent's real runc root) while
// its monitor is gone: the sweep tries runc again after 1, 2, 4 ... passes, logs each try once,
// and goes on with the other tasks; an agent restart is not stopped by it either, nor an agent
// adopting it from its bundle after Redis lost its record.
import { readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ShimState } from '@berth/api';
import { createLogger, keys } from '@berth/kit';
import { tempDir } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShimAgent } from './domain/agent.js';
import { procStat } from './runtime/monitor.js';
import {
  bindRootfs,
  createTask,
  type LocalAgent,
  makeSpec,
  newId,
  removeTestCgroups,
  type ShimWorld,
  startLocalAgent,
  startWorld,
} from './testing/fixture.js';

const ns = 'backoff';
let w: ShimWorld;
/** An agent in this process, whose sweep passes the tests run one by one. */
let la: LocalAgent;
const localNode = `backoff-${Math.random().toString(36).slice(2, 10)}`;
let bin: string;
/** Every runc command line the local agent ran, one a line (its runc is a wrapper that logs them). */
let runcCalls: string;
/** What the local agent logged. */
const logged: { msg: string; id?: string; failures?: number; retryInPasses?: number }[] = [];

beforeAll(async () => {
  bin = await tempDir('backoff-runc');
  runcCalls = join(bin, 'calls');
  await writeFile(runcCalls, '');
  const wrapper = join(bin, 'runc');
  await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${runcCalls}\nexec /usr/sbin/runc "$@"\n`, {
    mode: 0o755,
  });
  w = await startWorld({ sweepMs: 100 });
  la = await startLocalAgent(w, localNode, {
    runc: wrapper,
    log: createLogger({
      service: 'shim',
      node: localNode,
      level: 'info',
      destination: { write: (line: string) => void logged.push(JSON.parse(line)) },
    }),
  });
});
afterAll(async () => {
  await la?.close();
  await removeTestCgroups(localNode);
  await w?.close();
  if (bin) await rm(bin, { recursive: true, force: true });
});

/** How many `runc state` of task `id` the local agent has run. */
function runcStates(id: string): number {
  return readFileSync(runcCalls, 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(` state ${id}`)).length;
}

/** Waits until process `pid` is gone or a zombie (SIGKILL acts at once; its reaping may not). */
async function gone(pid: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const st = await procStat(pid);
    if (!st || st.state === 'Z' || st.state === 'X') return;
    if (Date.now() > deadline) throw new Error(`process ${pid} outlived SIGKILL`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A started `sleep 300` task of the local agent. */
async function sleeper(): Promise<ShimState> {
  const id = newId();
  const spec = await makeSpec(['sleep', '300'], { cgroupsPath: `/berth-test/${localNode}/${id}` });
  return la.agent.create({
    namespace: ns,
    id,
    spec,
    rootfs: bindRootfs(la.rootfs),
    terminal: false,
    stdin: false,
    start: true,
  });
}

/** The failures logged for task `id`, each with the passes it waits. */
const failures = (id: string) =>
  logged
    .filter((l) => l.id === id && l.msg.startsWith('runc cannot tell the state'))
    .map((l) => l.retryInPasses);

describe('the sweep and a task runc cannot read', () => {
  it('tries it after 1, 2, 4 ... passes (capped), logs once a try, reconciles the others; a success or a new failure starts afresh', async () => {
    const broken = await sleeper();
    const lost = await sleeper();
    // Both monitors die without an exit file; so does the second task's process.
    for (const pid of [broken.monitorPid, lost.monitorPid, lost.pid]) process.kill(pid as number, 'SIGKILL');
    for (const pid of [broken.monitorPid, lost.monitorPid, lost.pid]) await gone(pid as number);
    const stateFile = join(la.layout.runc, ns, broken.id, 'state.json');
    const good = await readFile(stateFile);
    await writeFile(stateFile, '{"id":');

    const tries: number[] = [];
    const pass = async (n: number) => {
      const before = runcStates(broken.id);
      await la.agent.sweep();
      if (runcStates(broken.id) > before) tries.push(n);
    };
    for (let n = 1; n <= 40; n++) await pass(n);
    // Waits of 1, 2, 4, 8, 16, then 30 passes (5 minutes of the default 10 s sweep).
    expect(tries).toEqual([1, 3, 6, 11, 20, 37]);
    expect(failures(broken.id)).toEqual([1, 2, 4, 8, 16, 30]);
    expect(await la.agent.state({ namespace: ns, id: lost.id })).toMatchObject({
      status: 'stopped',
      exitCode: 255,
      reason: 'MonitorLost',
    });
    expect((await la.agent.state({ namespace: ns, id: broken.id })).status).toBe('running');

    // runc reads it again: the next try finds it live without its monitor, and says so once.
    await writeFile(stateFile, good);
    for (let n = 41; n <= 68; n++) await pass(n);
    expect(tries.slice(6)).toEqual([68]);
    expect((await la.agent.state({ namespace: ns, id: broken.id })).status).toBe('unknown');
    expect(logged.filter((l) => l.id === broken.id && l.msg.startsWith('runc tells the state'))).toHaveLength(
      1,
    );

    // Broken again: a first failure, tried after one pass (an unknown task is asked every pass).
    await writeFile(stateFile, '{"id":');
    for (let n = 69; n <= 73; n++) await pass(n);
    expect(tries.slice(7)).toEqual([69, 71]);
    expect(failures(broken.id).slice(6)).toEqual([1, 2]);

    // Readable again, and its process gone: the try due finds it stopped.
    await writeFile(stateFile, good);
    await la.agent.kill({ namespace: ns, id: broken.id, signal: 'SIGKILL', all: true });
    await gone(broken.pid);
    await pass(74);
    expect(tries.slice(9)).toEqual([74]);
    expect(await la.agent.state({ namespace: ns, id: broken.id })).toMatchObject({
      status: 'stopped',
      exitCode: 255,
      reason: 'MonitorLost',
    });
    await la.agent.delete({ namespace: ns, id: broken.id });
    await la.agent.delete({ namespace: ns, id: lost.id });
  });

  it('an agent adopting such a task from its bundle (Redis lost its record) recovers the others and backs it off', async () => {
    const broken = await sleeper();
    const fine = await sleeper();
    process.kill(broken.monitorPid as number, 'SIGKILL');
    await gone(broken.monitorPid as number);
    const stateFile = join(la.layout.runc, ns, broken.id, 'state.json');
    const good = await readFile(stateFile);
    await writeFile(stateFile, '{"id":');
    // Redis lost the records while no agent ran: `broken` is still claimed, `fine` not even that,
    // so recovery finds it by its bundle only after the claimed tasks.
    await la.agent.close();
    await la.redis.del(keys.shimTask(localNode, ns, broken.id), keys.shimTask(localNode, ns, fine.id));
    await la.redis.srem(keys.shimTasks(localNode), `${ns}/${fine.id}`);
    const adopted: typeof logged = [];
    const again = new ShimAgent({
      log: createLogger({
        service: 'shim',
        node: localNode,
        level: 'info',
        destination: { write: (line: string) => void adopted.push(JSON.parse(line)) },
      }),
      publish: () => undefined,
      runc: join(bin, 'runc'),
      redis: la.redis,
      node: localNode,
      layout: la.layout,
    });
    try {
      const asked = runcStates(broken.id);
      await again.recover();
      // Asked once, in adopt; the reconcile that follows waits for its turn.
      expect(runcStates(broken.id)).toBe(asked + 1);
      for (const t of [broken, fine])
        expect(await again.state({ namespace: ns, id: t.id })).toMatchObject({
          status: 'running',
          pid: t.pid,
        });
      const failed = () =>
        adopted
          .filter((l) => l.id === broken.id && l.msg.startsWith('runc cannot tell the state'))
          .map((l) => [l.msg.includes('adopted') ? 'adopt' : 'sweep', l.retryInPasses]);
      expect(failed()).toEqual([['adopt', 1]]);

      // The adopt's failure counts as pass 0's: the sweep tries again in passes 2, 5 and 10.
      const tries: number[] = [];
      for (let n = 1; n <= 12; n++) {
        const before = runcStates(broken.id);
        await again.sweep();
        if (runcStates(broken.id) > before) tries.push(n);
      }
      expect(tries).toEqual([2, 5, 10]);
      expect(failed()).toEqual([
        ['adopt', 1],
        ['sweep', 2],
        ['sweep', 4],
        ['sweep', 8],
      ]);

      // Readable again, and its process gone: the try due (pass 19) finds it stopped.
      await writeFile(stateFile, good);
      await again.kill({ namespace: ns, id: broken.id, signal: 'SIGKILL', all: true });
      await gone(broken.pid);
      for (let n = 13; n <= 19; n++) await again.sweep();
      expect(await again.state({ namespace: ns, id: broken.id })).toMatchObject({
        status: 'stopped',
        exitCode: 255,
        reason: 'MonitorLost',
      });
      await again.kill({ namespace: ns, id: fine.id, signal: 'SIGKILL', all: true });
      expect(await again.wait({ namespace: ns, id: fine.id })).toMatchObject({ exitCode: 137 });
      for (const t of [broken, fine]) await again.delete({ namespace: ns, id: t.id });
    } finally {
      await again.close();
    }
  });

  it('an agent restarting with such a task starts, and reports it as it was', async () => {
    const { id, st } = await createTask(w, ns, ['sleep', '300']);
    await w.killAgent();
    process.kill(st.monitorPid as number, 'SIGKILL');
    await gone(st.monitorPid as number);
    const stateFile = join(w.stateRoot, 'runc', ns, id, 'state.json');
    const good = await readFile(stateFile);
    await writeFile(stateFile, '{"id":');
    await w.startAgent();
    expect(await w.client.state({ namespace: ns, id })).toMatchObject({ status: 'running', pid: st.pid });

    await writeFile(stateFile, good);
    await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true });
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({
      exitCode: 255,
      reason: 'MonitorLost',
    });
    await w.client.delete({ namespace: ns, id });
  });
});
