import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SHIM_SHM_SOURCE } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCriStreams } from './cri-log.js';
import { isTmpfsMountPoint, mountsUnder, tmpfsSyscall, unmountAll } from './runtime/mounts.js';
import { bindRootfs, codeOf, makeSpec, newId, type ShimWorld, startWorld } from './testing/fixture.js';
import { until } from './testing/network.js';

// A container's shareable /dev/shm (SHIM_SHM_SOURCE): a real tmpfs the shim mounts in the
// container's files directory, another task binds, and remove-files unmounts before it removes.

const ns = 'default';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  // A failed test must not leave a tmpfs under the world's state root it is about to remove.
  if (w) await unmountAll(join(w.stateRoot, 'containers')).catch(() => undefined);
  await w?.close();
});

type Mount = { destination: string; type: string; source: string; options: string[] };

/** A spec whose /dev/shm mount (runc's default tmpfs) is replaced by `shm`. */
async function specWith(id: string, args: string[], shm: (m: Mount) => Mount) {
  const spec = await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${id}` });
  spec.mounts = (spec.mounts as Mount[]).map((m) => (m.destination === '/dev/shm' ? shm(m) : m));
  return spec;
}

const shmDir = (id: string) => join(w.stateRoot, 'containers', ns, id, 'shm');

async function run(id: string, spec: Record<string, unknown>) {
  const created = await w.client.create({ namespace: ns, id, spec, rootfs: bindRootfs(w.rootfs) });
  await w.client.start({ namespace: ns, id });
  const exit = await w.client.wait({ namespace: ns, id }, { timeoutMs: 20_000 });
  const out = await readCriStreams(created.logPath as string);
  await w.client.delete({ namespace: ns, id });
  return { exitCode: exit.exitCode, stdout: out.stdout, bundle: created.bundle as string };
}

describe("a container's shareable /dev/shm", () => {
  it('is a tmpfs on the node that another container binds while it runs, unmounted when it exits', async () => {
    const a = newId();
    const dir = shmDir(a);
    const marked = (m: Mount) => ({ ...m, source: SHIM_SHM_SOURCE });
    const script = 'echo from-a > /dev/shm/x; grep " /dev/shm " /proc/mounts; exec sleep 60';
    const created = await w.client.create({
      namespace: ns,
      id: a,
      spec: await specWith(a, ['sh', '-c', script], marked),
      rootfs: bindRootfs(w.rootfs),
    });
    await w.client.start({ namespace: ns, id: a });
    await until(
      'the first container to write /dev/shm/x',
      async () => (await codeOf(stat(join(dir, 'x')))) === undefined,
    );
    expect(await isTmpfsMountPoint(dir)).toBe(true);
    expect((await stat(dir)).mode & 0o7777).toBe(0o1777);
    expect(await readFile(join(dir, 'x'), 'utf8')).toBe('from-a\n');

    // Another container binds it as its /dev/shm: it reads what the first wrote, and writes back.
    const b = newId();
    const bound = (m: Mount) => ({ ...m, type: 'bind', source: dir, options: ['rbind', 'rprivate', 'rw'] });
    const second = await run(
      b,
      await specWith(b, ['sh', '-c', 'cat /dev/shm/x; echo from-b > /dev/shm/y'], bound),
    );
    expect(second).toMatchObject({ exitCode: 0, stdout: 'from-a\n' });
    expect(await readFile(join(dir, 'y'), 'utf8')).toBe('from-b\n');
    expect(await mountsUnder(dir)).toEqual([dir]);

    // The first one stops: its tmpfs goes with it (the directory stays, with its files dir).
    await w.client.kill({ namespace: ns, id: a, signal: 'SIGKILL' });
    await w.client.wait({ namespace: ns, id: a }, { timeoutMs: 20_000 });
    // Bound in with the tmpfs's flags, and the tmpfs has the spec's size and mode (1777 is not listed).
    const out = await readCriStreams(created.logPath as string);
    expect(out.stdout).toBe('shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k 0 0\n');
    await until("the exited task's tmpfs to be unmounted", async () => (await mountsUnder(dir)).length === 0);
    await w.client.delete({ namespace: ns, id: a });

    // Its next run mounts a fresh one.
    const again = await run(a, await specWith(a, ['ls', '-A', '/dev/shm'], marked));
    expect(again).toMatchObject({ exitCode: 0, stdout: '' });
    await until("the second run's tmpfs to be unmounted", async () => (await mountsUnder(dir)).length === 0);

    await w.client['remove-files']({ namespace: ns, id: a });
    expect(await codeOf(stat(join(w.stateRoot, 'containers', ns, a)))).toBe('ENOENT');
    await w.client['remove-files']({ namespace: ns, id: b });
  });

  it('is never removed through while it cannot be unmounted: remove-files fails and keeps it', async () => {
    const a = newId();
    const dir = shmDir(a);
    const marked = (m: Mount) => ({ ...m, source: SHIM_SHM_SOURCE });
    await w.client.create({
      namespace: ns,
      id: a,
      spec: await specWith(a, ['sh', '-c', ': > /dev/shm/kept; exec sleep 60'], marked),
      rootfs: bindRootfs(w.rootfs),
    });
    await w.client.start({ namespace: ns, id: a });
    await until(
      'the container to write /dev/shm/kept',
      async () => (await codeOf(stat(join(dir, 'kept')))) === undefined,
    );
    // A process of the node working in it keeps the kernel from unmounting it (EBUSY): neither
    // the task's exit nor remove-files can.
    let holder: ChildProcess | undefined = spawn('sleep', ['60'], { cwd: dir, stdio: 'ignore' });
    try {
      await once(holder, 'spawn');
      await w.client.kill({ namespace: ns, id: a, signal: 'SIGKILL' });
      await w.client.wait({ namespace: ns, id: a }, { timeoutMs: 20_000 });
      await w.client.delete({ namespace: ns, id: a });
      expect(await codeOf(w.client['remove-files']({ namespace: ns, id: a }))).toBe('INTERNAL');
      expect(await isTmpfsMountPoint(dir)).toBe(true);
      expect((await stat(join(dir, 'kept'))).isFile()).toBe(true);
      const gone = once(holder, 'exit');
      holder.kill('SIGKILL');
      await gone;
      holder = undefined;
      // The next attempt (the task-service's reconcile retries) finishes it.
      await w.client['remove-files']({ namespace: ns, id: a });
      expect(await mountsUnder(dir)).toEqual([]);
      expect(await codeOf(stat(join(w.stateRoot, 'containers', ns, a)))).toBe('ENOENT');
    } finally {
      holder?.kill('SIGKILL');
    }
  });

  it('refuses a marked mount that is not a tmpfs, or an option a tmpfs has not, mounting nothing', async () => {
    for (const shm of [
      (m: Mount) => ({ ...m, type: 'bind', source: SHIM_SHM_SOURCE, options: ['rbind'] }),
      (m: Mount) => ({ ...m, source: SHIM_SHM_SOURCE, options: [...m.options, 'rbind'] }),
    ]) {
      const id = newId();
      const r = w.client.create({
        namespace: ns,
        id,
        spec: await specWith(id, ['true'], shm),
        rootfs: bindRootfs(w.rootfs),
      });
      expect(await codeOf(r)).toBe('INVALID_ARGUMENT');
      expect(await codeOf(w.client.state({ namespace: ns, id }))).toBe('NOT_FOUND');
      expect(await mountsUnder(join(w.stateRoot, 'containers', ns, id))).toEqual([]);
      await w.client['remove-files']({ namespace: ns, id });
    }
  });

  it('turns tmpfs options into mount(2) flags and data', () => {
    expect(tmpfsSyscall(['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'])).toEqual({
      flags: 2 | 8 | 4,
      data: 'mode=1777,size=65536k',
    });
    expect(tmpfsSyscall(['ro', '', 'rw', 'strictatime'])).toEqual({ flags: 1 | (1 << 24), data: '' });
    expect(() => tmpfsSyscall(['bind'])).toThrow(/"bind" is not an option of a tmpfs mount/);
    expect(() => tmpfsSyscall(['size=1m,uid=0'])).toThrow(/not an option/);
  });
});
