// Removal in the background (`delete-container` with `background`, what the CRI gateway's
// RemoveContainer and RemovePodSandbox use): the record, task and name go in the call, and the
// task-service frees what the container held on its node (runc state, bundle, files, snapshot)
// after. A freeing that cannot finish (its node's shim is down) is kept in Redis and finished by
// the reconcile once the shim is back: nothing is leaked, and nothing half-removed is visible.
import { BerthError, Code, ShimApi, SnapshotApi, TaskApi } from '@berth/api';
import { call, keys } from '@berth/kit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack, until } from './containers-stack.js';

let IMAGE = 'berth.test/busybox:latest';
let s: ContainerStack;
let redis: Redis;

beforeAll(async () => {
  // A short reconcile interval and container lock ttl (the default 30 s each), so the tests wait
  // on the reconcile and on a dead replica's lock for seconds rather than half a minute.
  s = await startContainerStack({
    config: { services: { 'task-service': { reconcileIntervalMs: 300, containerLockTtlMs: 5000 } } },
  });
  IMAGE = (await s.importBusybox(IMAGE)).name;
  redis = new Redis(s.redis.url);
}, 120_000);
afterAll(async () => {
  redis?.disconnect();
  await s?.stop();
}, 60_000);

const run = (...args: string[]) => s.berth(args);

/** The code a call fails with, or "ok". */
async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof BerthError) return err.code;
    throw err;
  }
}

const snapshot = (id: string) =>
  outcome(
    call(s.nc, SnapshotApi, 'stat', { key: `containers/default/${id}` }, { node: s.node, timeoutMs: 5_000 }),
  );
const shimTask = (id: string) =>
  outcome(call(s.nc, ShimApi, 'state', { namespace: 'default', id }, { node: s.node, timeoutMs: 5_000 }));
const removeInBackground = (id: string) =>
  call(
    s.nc,
    TaskApi,
    'delete-container',
    { id, background: true },
    { namespace: 'default', timeoutMs: 30_000 },
  );
const collecting = () => redis.hkeys(keys.containersCollecting('default'));

/** A container that ran and exited: a stopped task its shim still holds, and its snapshot. */
async function exited(name: string): Promise<string> {
  const r = await run('run', '-d', '--network', 'none', '--name', name, IMAGE, 'true');
  expect(r.code, r.stderr).toBe(0);
  const id = r.stdout.trim();
  await until('the container to exit', async () => (await run('wait', id)).code === 0);
  expect(await shimTask(id)).toBe('ok');
  return id;
}

describe('delete-container in the background', () => {
  it('removes the record in the call and frees the task, files and snapshot after', async () => {
    const id = await exited('bg-done');
    await removeInBackground(id);
    expect((await run('inspect', id)).code).toBe(1);
    // The name is free at once.
    const again = await run('create', '--network', 'none', '--name', 'bg-done', IMAGE, 'true');
    expect(again.code, again.stderr).toBe(0);
    await until('the removed container to be freed', async () => (await collecting()).length === 0);
    expect(await snapshot(id)).toBe(Code.NOT_FOUND);
    expect(await shimTask(id)).toBe(Code.NOT_FOUND);
    // Removing it again is success: it is gone.
    expect(await outcome(removeInBackground(id))).toBe(Code.NOT_FOUND);
    expect((await run('rm', 'bg-done')).code).toBe(0);
  }, 120_000);

  it('kills a running container first when forced', async () => {
    const r = await run('run', '-d', '--network', 'none', '--name', 'bg-live', IMAGE, 'sleep', '300');
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    const refused = await outcome(removeInBackground(id));
    expect(refused).toBe(Code.FAILED_PRECONDITION);
    await call(
      s.nc,
      TaskApi,
      'delete-container',
      { id, force: true, background: true },
      { namespace: 'default' },
    );
    expect((await run('inspect', id)).code).toBe(1);
    await until('the removed container to be freed', async () => (await shimTask(id)) === Code.NOT_FOUND);
    await until('its snapshot to go', async () => (await snapshot(id)) === Code.NOT_FOUND);
  }, 120_000);

  it('keeps what it could not free while the shim is down, and the reconcile frees it after', async () => {
    const id = await exited('bg-shim-down');
    await s.kill('shim', 'SIGKILL');
    await removeInBackground(id);
    expect((await run('inspect', id)).code).toBe(1);
    // The freeing failed on the dead shim: the removal is kept, the snapshot still there.
    await until('the freeing to fail', async () => (await collecting()).includes(id));
    expect(await snapshot(id)).toBe('ok');

    await s.start('shim');
    await until('the reconcile to free the container', async () => (await collecting()).length === 0, 60_000);
    expect(await snapshot(id)).toBe(Code.NOT_FOUND);
    expect(await shimTask(id)).toBe(Code.NOT_FOUND);
  }, 120_000);

  it('leaves a freeing a killed task-service did not finish to the next one', async () => {
    const id = await exited('bg-ts-down');
    // Stopped, the shim holds the freeing's first request unanswered while the replica dies.
    const shim = s.procs.get('shim');
    shim?.kill('SIGSTOP');
    await removeInBackground(id);
    await s.kill('task-service', 'SIGKILL');
    shim?.kill('SIGCONT');
    expect(await collecting()).toContain(id);
    expect(await snapshot(id)).toBe('ok');
    await s.start('task-service');
    await until(
      'the next replica to free the container',
      async () => (await collecting()).length === 0,
      90_000,
    );
    expect(await snapshot(id)).toBe(Code.NOT_FOUND);
    expect(await shimTask(id)).toBe(Code.NOT_FOUND);
  }, 150_000);
});
