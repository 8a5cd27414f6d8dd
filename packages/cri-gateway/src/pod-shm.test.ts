import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CRI_NAMESPACE } from './images/ports.js';
import { createCtr, exec, rpc, runPod, until, usePodStack } from './testdata/pod-fixtures.js';
import { runcIds } from './testdata/runtime-stack.js';

// The /dev/shm of a CRI pod on real services (as pods.test.ts): one tmpfs per pod on the node,
// shared by its containers as their IPC namespace is, as containerd's CRI makes it; the node's own
// in the node's IPC namespace; nothing left mounted once the pod is removed.

const stack = usePodStack();

/** Mount points at or under `dir` in this (the node's) mount namespace. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => (l.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

/** ExecSync of a shell command: its exit code and output. */
async function sh(ctr: string, script: string) {
  const r = await exec(ctr, ['sh', '-c', script]);
  return { code: r.exit_code, out: Buffer.from(r.stdout).toString() + Buffer.from(r.stderr).toString() };
}

/** Removes a pod and waits for the task-service's collection to delete its tasks. */
async function removePod(pod: string, ctrs: string[]): Promise<void> {
  await rpc('StopPodSandbox', { pod_sandbox_id: pod });
  await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  const ids = [pod, ...ctrs];
  await until(
    'the pod tasks to be deleted',
    () => !runcIds(stack().stateRoot).some((id) => ids.includes(id)),
  );
}

describe('CRI pod /dev/shm', () => {
  it("is one tmpfs per pod that its containers share and other pods' do not see, gone with the pod", async () => {
    const containers = join(stack().stateRoot, 'containers');
    const pod = await runPod('shm-a');
    const [a1, a2] = [await createCtr(pod, 'shm-a', 'one'), await createCtr(pod, 'shm-a', 'two')];
    const other = await runPod('shm-b');
    const b1 = await createCtr(other, 'shm-b', 'one');
    for (const c of [a1, a2, b1]) await rpc('StartContainer', { container_id: c });

    // POSIX shared memory is files in /dev/shm: one container's is the other's.
    expect(await sh(a1, 'echo from-one > /dev/shm/x')).toEqual({ code: 0, out: '' });
    expect(await sh(a2, 'cat /dev/shm/x && echo from-two > /dev/shm/y')).toEqual({
      code: 0,
      out: 'from-one\n',
    });
    expect(await sh(a1, 'cat /dev/shm/y')).toEqual({ code: 0, out: 'from-two\n' });
    expect(await sh(b1, 'ls -A /dev/shm')).toEqual({ code: 0, out: '' });
    // The tmpfs containerd's CRI makes: nosuid, nodev, noexec, 64 MiB.
    expect((await sh(a2, 'grep " /dev/shm " /proc/mounts')).out).toMatch(
      /^\S+ \/dev\/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k /,
    );

    // One mount on the node per pod, in its pause container's directory.
    const shmOf = (id: string) => join(containers, CRI_NAMESPACE, id, 'shm');
    expect(mountsUnder(containers).sort()).toEqual([shmOf(pod), shmOf(other)].sort());
    expect(readFileSync(join(shmOf(pod), 'x'), 'utf8')).toBe('from-one\n');

    await removePod(pod, [a1, a2]);
    // remove-files unmounts the tmpfs, then removes the directory: both are waited for.
    await until(
      'the pod tmpfs to be unmounted and its directory removed',
      () => mountsUnder(containers).length === 1 && !existsSync(join(containers, CRI_NAMESPACE, pod)),
    );
    expect(mountsUnder(containers)).toEqual([shmOf(other)]);
    // The other pod's is untouched.
    expect(await sh(b1, 'echo still > /dev/shm/z && cat /dev/shm/z')).toEqual({ code: 0, out: 'still\n' });
    // Stopped, a pod's tmpfs is unmounted (as containerd's StopPodSandbox), not kept in memory
    // until the kubelet removes the pod.
    await rpc('StopPodSandbox', { pod_sandbox_id: other });
    await until("the stopped pod's tmpfs to be unmounted", () => mountsUnder(containers).length === 0);
    expect(existsSync(join(containers, CRI_NAMESPACE, other))).toBe(true);
    await removePod(other, [b1]);
  });

  it("is the node's /dev/shm for a pod in the node's IPC namespace, with nothing mounted for it", async () => {
    const containers = join(stack().stateRoot, 'containers');
    const hostIpc = { network: 'POD', pid: 'CONTAINER', ipc: 'NODE' };
    const name = `berth-pod-shm-${randomBytes(6).toString('hex')}`;
    const sc = { linux: { security_context: { namespace_options: hostIpc } } };
    const pod = await runPod('shm-host', sc);
    try {
      const c = await createCtr(pod, 'shm-host', 'one', sc);
      await rpc('StartContainer', { container_id: c });
      expect(await sh(c, `echo node > /dev/shm/${name}`)).toEqual({ code: 0, out: '' });
      expect(readFileSync(join('/dev/shm', name), 'utf8')).toBe('node\n');
      expect(mountsUnder(containers)).toEqual([]);
      await removePod(pod, [c]);
    } finally {
      rmSync(join('/dev/shm', name), { force: true });
    }
  });
});
