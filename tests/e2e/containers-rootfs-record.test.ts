// The rootfs mounts a container's record keeps (issue 9: task create without the
// snapshot-service `mounts` hop). The record holds exactly what the snapshot-service gives for its
// snapshot, task create uses them with no snapshot-service running, and a record made before the
// field existed (no rootfs) still gets its mounts from the snapshot-service.
import { SnapshotApi, TaskApi } from '@berth/api';
import { call, keys } from '@berth/kit';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ContainerStack, startContainerStack } from './containers-stack.js';

let IMAGE = 'berth.test/busybox:latest';
let s: ContainerStack;

beforeAll(async () => {
  s = await startContainerStack();
  IMAGE = (await s.importBusybox(IMAGE)).name;
}, 120_000);
afterAll(async () => s?.stop(), 60_000);

const run = (...args: string[]) => s.berth(args);

/** The task-service's record of a container, by name. */
async function recordOf(name: string) {
  return (
    await call(s.nc, TaskApi, 'get-container', { id: name }, { namespace: 'default', timeoutMs: 5_000 })
  ).container;
}

/** The status `berth ps -a` shows for a container, by name. */
async function statusOf(name: string): Promise<string> {
  const r = await run('inspect', name);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout)[0] as { task?: { status: string } }).task?.status ?? 'none';
}

describe('the rootfs mounts in the container record', () => {
  it('are the snapshot-service mounts of its snapshot, and task create needs no snapshot-service', async () => {
    const made = await run('create', '--network', 'none', '--name', 'rootfs-kept', IMAGE, 'sleep', '300');
    expect(made.code, made.stderr).toBe(0);
    const c = await recordOf('rootfs-kept');
    const { mounts } = await call(
      s.nc,
      SnapshotApi,
      'mounts',
      { key: c.snapshotKey },
      { node: s.node, timeoutMs: 5_000 },
    );
    expect(c.rootfs).toEqual(mounts);
    expect(mounts.length).toBeGreaterThan(0);

    // With the snapshot-service down, the only snapshot-service call task create made is gone.
    await s.kill('snapshot-service', 'SIGKILL');
    try {
      const started = await run('start', 'rootfs-kept');
      expect(started.code, started.stderr).toBe(0);
      expect(await statusOf('rootfs-kept')).toBe('running');
      const ls = await run('exec', 'rootfs-kept', 'ls', '/bin/busybox');
      expect(ls.stdout.trim()).toBe('/bin/busybox');
    } finally {
      await s.start('snapshot-service');
    }
    const rm = await run('rm', '-f', 'rootfs-kept');
    expect(rm.code, rm.stderr).toBe(0);
  }, 120_000);

  it('a record without them (made before the field) asks the snapshot-service at task create', async () => {
    const made = await run('create', '--network', 'none', '--name', 'rootfs-old', IMAGE, 'sleep', '300');
    expect(made.code, made.stderr).toBe(0);
    const c = await recordOf('rootfs-old');
    // The record as an older task-service stored it: the same JSON without the field.
    const redis = new Redis(s.redis.url);
    try {
      const key = keys.container('default', c.id);
      const stored = JSON.parse((await redis.hget(key, 'data')) ?? 'null') as Record<string, unknown>;
      expect(stored.rootfs).toBeDefined();
      delete stored.rootfs;
      await redis.hset(key, 'data', JSON.stringify(stored));
    } finally {
      redis.disconnect();
    }
    expect((await recordOf('rootfs-old')).rootfs).toBeUndefined();

    const started = await run('start', 'rootfs-old');
    expect(started.code, started.stderr).toBe(0);
    expect(await statusOf('rootfs-old')).toBe('running');
    const rm = await run('rm', '-f', 'rootfs-old');
    expect(rm.code, rm.stderr).toBe(0);
  }, 120_000);
});
