// Containers left half-made by a dead service. A `run` whose shim dies (or is already down) fails
// within seconds with UNAVAILABLE; its rollback runs in reverse order, so what it cannot remove
// yet stays whole (never a record whose snapshot is gone), refuses to start, and is removed by the
// task-service's reconcile once the shim is back. A create whose task-service replica dies half-way
// is undone (network, snapshot, name) by the reconcile of the next one.
import { BerthError, Code, ShimApi, subjectOf } from '@berth/api';
import { call, keys } from '@berth/kit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, snapshotState, startContainerStack, until } from './containers-stack.js';

let IMAGE = 'berth.test/busybox:latest';
let s: ContainerStack;

beforeAll(async () => {
  // A short reconcile interval and container lock ttl (the default 30 s each), so the tests wait
  // on the reconcile and on a dead replica's lock for seconds rather than half a minute.
  // Calls between the services over NATS (not the node's sockets): these tests see that a request
  // reached the stopped shim by a copy of it on the bus. What a socket route does with a callee
  // that dies or freezes mid-call (UNAVAILABLE at once, or on the heartbeats' stall) is tested in
  // packages/kit/src/socket-route.test.ts; the rollback and reconcile here only see the code.
  s = await startContainerStack({
    config: {
      sameNodeCalls: 'nats',
      services: { 'task-service': { reconcileIntervalMs: 300, containerLockTtlMs: 5000 } },
    },
  });
  IMAGE = (await s.importBusybox(IMAGE)).name;
}, 120_000);
afterAll(async () => s?.stop(), 60_000);

const run = (...args: string[]) => s.berth(args);

/** The full id of a container by name, read from the task-service. */
async function idOf(name: string): Promise<string> {
  const r = await run('inspect', name);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout)[0] as { container: { id: string } }).container.id;
}

describe('run while the shim is down', () => {
  it('fails at once with UNAVAILABLE; the container stays whole, will not start, and goes once the shim is back', async () => {
    await s.kill('shim', 'SIGKILL');
    const started = Date.now();
    const r = await run('run', '-d', '--network', 'none', '--name', 'shim-down', IMAGE, 'sleep', '300');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/is unavailable|stopped answering/);
    // Seconds, not a create's 60 s timeout (room for a CLI start on a loaded machine).
    expect(Date.now() - started).toBeLessThan(20_000);

    // The rollback could not reach the shim: the container is still there, snapshot and all.
    const id = await idOf('shim-down');
    expect(await snapshotState(s, `containers/default/${id}`)).toBe('ok');
    const st = await run('start', 'shim-down');
    expect(st.code).not.toBe(0);
    expect(st.stderr).toContain('is being removed');
    expect(st.stderr).not.toContain('snapshot');

    await s.start('shim');
    await until('the reconcile to finish the removal', async () => (await run('inspect', id)).code === 1);
    expect(await snapshotState(s, `containers/default/${id}`)).toBe(Code.NOT_FOUND);
  }, 120_000);
});

describe('run during a shim kill', () => {
  it('fails within seconds with UNAVAILABLE instead of waiting out the shim create timeout', async () => {
    const shim = s.procs.get('shim');
    // Stopped, the shim holds the create request unanswered, as one dying mid-create does.
    shim?.kill('SIGSTOP');
    // A copy of every shim create request: once one is seen, the stopped shim has it too.
    const creates = s.nc.subscribe(subjectOf(ShimApi, 'create', s.node), { max: 1 });
    const sent = (async () => {
      for await (const _ of creates) return true;
      return false;
    })();
    const running = run('run', '-d', '--network', 'none', '--name', 'shim-killed', IMAGE, 'sleep', '300');
    expect(await sent).toBe(true);
    const id = await idOf('shim-killed');
    await s.kill('shim', 'SIGKILL');
    const killedAt = Date.now();
    const r = await running;
    expect(r.code).not.toBe(0);
    // The shim had taken the request: its silence, not a missing responder, is what was noticed.
    expect(r.stderr).toContain('stopped answering "create"');
    // The 5 s heartbeat stall and the rollback, not the shim create's 60 s timeout.
    expect(Date.now() - killedAt).toBeLessThan(20_000);

    await s.start('shim');
    await until('the reconcile to finish the removal', async () => (await run('inspect', id)).code === 1);
    expect(await snapshotState(s, `containers/default/${id}`)).toBe(Code.NOT_FOUND);
  }, 120_000);
});

describe('a task-service killed in the middle of a create', () => {
  it('leaves a creation the next one undoes: network, snapshot and name', async () => {
    const shim = s.procs.get('shim');
    // The create gets its snapshot, then waits on the stopped shim for its network.
    shim?.kill('SIGSTOP');
    // A copy of the network-setup request: once it is seen, the stopped shim has it too.
    const setups = s.nc.subscribe(subjectOf(ShimApi, 'network-setup', s.node), { max: 1 });
    const asked = (async () => {
      for await (const _ of setups) return true;
      return false;
    })();
    const creating = run('create', '--name', 'half', IMAGE, 'true');
    const redis = new Redis(s.redis.url);
    let id = '';
    try {
      id = await until(
        'the name to be reserved',
        async () => (await redis.get(keys.containerName('default', 'half'))) ?? '',
      );
      await until(
        'the rootfs snapshot',
        async () => (await snapshotState(s, `containers/default/${id}`)) === 'ok',
      );
      expect(await asked).toBe(true);
      await s.kill('task-service', 'SIGKILL');
      expect((await creating).code).not.toBe(0);
      // The shim goes on with the network setup it was asked for, for a container nobody records.
      shim?.kill('SIGCONT');
      await until('the shim to set up the pod network', async () =>
        (await call(s.nc, ShimApi, 'network-list', {}, { node: s.node, timeoutMs: 5_000 })).pods.some(
          (p) => p.podId === id,
        ),
      );
      await s.start('task-service');
      // The dead replica's lock on the container expires (5 s here), then the reconcile undoes it all.
      await until(
        'the name to be free again',
        async () => (await redis.get(keys.containerName('default', 'half'))) === null,
        60_000,
      );
      expect(await redis.hlen(keys.containersCreating('default'))).toBe(0);
    } finally {
      redis.disconnect();
    }
    expect(await snapshotState(s, `containers/default/${id}`)).toBe(Code.NOT_FOUND);
    const pods = (await call(s.nc, ShimApi, 'network-list', {}, { node: s.node, timeoutMs: 5_000 })).pods;
    expect(pods.map((p) => p.podId)).not.toContain(id);
    const again = await run('create', '--name', 'half', IMAGE, 'true');
    expect(again.code, again.stderr).toBe(0);
    expect((await run('rm', 'half')).code).toBe(0);
  }, 180_000);
});

describe('a task-service killed while the shim creates the task', () => {
  it('leaves a task only the shim knows; the reconcile deletes it once the lock expires, and start works', async () => {
    const c = await run('create', '--network', 'none', '--name', 'lost-reply', IMAGE, 'sleep', '300');
    expect(c.code, c.stderr).toBe(0);
    const id = c.stdout.trim();
    const creates = s.nc.subscribe(subjectOf(ShimApi, 'create', s.node), { max: 1 });
    const sent = (async () => {
      for await (const _ of creates) return true;
      return false;
    })();
    const starting = run('start', 'lost-reply');
    expect(await sent).toBe(true);
    await s.kill('task-service', 'SIGKILL');
    expect((await starting).code).not.toBe(0);
    const ref = { namespace: 'default', id };
    const state = () => call(s.nc, ShimApi, 'state', ref, { node: s.node, timeoutMs: 5_000 });
    const gone = () =>
      state().then(
        () => false,
        (e: unknown) => e instanceof BerthError && e.code === Code.NOT_FOUND,
      );
    // The shim finished the create for a task-service that never heard its answer.
    await until('the shim to have the task', async () => !(await gone()));
    await s.start('task-service');
    // The dead replica's lock expires (5 s here): the reconcile undoes the task nobody recorded,
    // which would otherwise run on unseen and refuse every later start of the container.
    await until('the reconcile to delete the unrecorded task', gone, 20_000);
    const again = await run('start', 'lost-reply');
    expect(again.code, again.stderr).toBe(0);
    expect((await state()).status).toBe('running');

    const rm = await run('rm', '-f', 'lost-reply');
    expect(rm.code, rm.stderr).toBe(0);
    expect((await run('inspect', id)).code).toBe(1);
    expect(await gone()).toBe(true);
  }, 120_000);
});
