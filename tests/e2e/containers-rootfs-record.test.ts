// The rootfs mounts a container's record keeps (issue 9: task create without the
// snapshot-service `mounts` hop). The record holds exactly what the snapshot-service gives for its
// snapshot, task create uses them with no snapshot-service running, and a record made before the
// field existed (no rootfs) still gets its mounts from the snapshot-service. A create with
// prepareAfterReply (the CRI gateway's) answers before the snapshot exists: a start sent at once
// waits for it, and a prepare that failed is made again by the first task create.
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

/** create-container over NATS with the rootfs prepared after the reply, as the CRI gateway asks. */
function createAfterReply(name: string) {
  return call(
    s.nc,
    TaskApi,
    'create-container',
    { image: IMAGE, name, network: 'none', cmd: ['sleep', '300'], prepareAfterReply: true },
    { namespace: 'default', timeoutMs: 30_000 },
  );
}

/** The snapshot-service's mounts of a snapshot key on the stack's node. */
function mountsOf(key: string) {
  return call(s.nc, SnapshotApi, 'mounts', { key }, { node: s.node, timeoutMs: 5_000 });
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

  it('prepared after the reply: the reply has none, a start sent at once runs, the record then has them', async () => {
    const c = await createAfterReply('rootfs-after');
    expect(c.rootfs).toBeUndefined();
    // No wait of the test's own: the task-service's create holds the lock until the snapshot is made.
    const t = await call(
      s.nc,
      TaskApi,
      'create',
      { id: c.id, start: true },
      { namespace: 'default', timeoutMs: 30_000 },
    );
    expect(t.status).toBe('running');
    const ls = await run('exec', 'rootfs-after', 'ls', '/bin/busybox');
    expect(ls.stdout.trim(), ls.stderr).toBe('/bin/busybox');
    const { mounts } = await mountsOf(c.snapshotKey);
    expect((await recordOf('rootfs-after')).rootfs).toEqual(mounts);
    const rm = await run('rm', '-f', 'rootfs-after');
    expect(rm.code, rm.stderr).toBe(0);
    await expect(mountsOf(c.snapshotKey)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  }, 120_000);

  it('a prepare after the reply that failed leaves the record; the first task create makes the snapshot', async () => {
    await s.kill('snapshot-service', 'SIGKILL');
    let c: Awaited<ReturnType<typeof createAfterReply>>;
    try {
      // The record is stored and answered; the prepare behind it finds no snapshot-service.
      c = await createAfterReply('rootfs-failed');
      expect(c.rootfs).toBeUndefined();
      const started = await run('start', 'rootfs-failed');
      expect(started.code).not.toBe(0);
      expect(started.stderr).toMatch(/snapshot/);
    } finally {
      await s.start('snapshot-service');
    }
    const record = await recordOf('rootfs-failed');
    expect(record.rootfs).toBeUndefined();
    await expect(mountsOf(c.snapshotKey)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // With the snapshot-service back, the start prepares the snapshot from the image's chain.
    const started = await run('start', 'rootfs-failed');
    expect(started.code, started.stderr).toBe(0);
    expect(await statusOf('rootfs-failed')).toBe('running');
    expect((await mountsOf(c.snapshotKey)).mounts.length).toBeGreaterThan(0);
    const rm = await run('rm', '-f', 'rootfs-failed');
    expect(rm.code, rm.stderr).toBe(0);
    await expect(mountsOf(c.snapshotKey)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  }, 120_000);
});
