import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCtr,
  ctrStatus,
  exec,
  grpcError,
  INVALID_ARGUMENT,
  type Json,
  rpc,
  runPod,
  startPodStack,
} from './testdata/pod-fixtures.js';
import type { RuntimeStack } from './testdata/runtime-stack.js';

// CreateContainer / UpdateContainerResources resources through the real CRI socket and a real
// node: cgroup v2 `unified`, memory_swap_limit_in_bytes, cpuset_cpus/mems, CDI_devices, a negative
// oom_score_adj.

const FAILED_PRECONDITION = 9;
const UNIMPLEMENTED = 12;
/** The cgroup version runc uses here: v2 only when /sys/fs/cgroup itself is cgroup2. */
const CGROUP_V2 = statfsSync('/sys/fs/cgroup').type === 0x63677270;
const MiB = 1024 * 1024;

let s: RuntimeStack;
let pod: string;

beforeAll(async () => {
  ({ s } = await startPodStack());
  pod = await runPod('res');
}, 180_000);

afterAll(async () => {
  if (pod) await rpc('RemovePodSandbox', { pod_sandbox_id: pod }).catch(() => undefined);
  await s?.stop();
}, 60_000);

/** A container's berth record (its spec from `runtimeSpec`) and task, from the verbose ContainerStatus. */
const recordOf = async (id: string) => {
  const r = await rpc<{ info: { info: string } }>('ContainerStatus', { container_id: id, verbose: true });
  const rec = JSON.parse(r.info.info) as { task: { pid: number }; container: Json; runtimeSpec: Json };
  return { task: rec.task, container: { ...rec.container, spec: rec.runtimeSpec } };
};
/** The v1 memory cgroup directory of a process (this host's kind; v2 is its unified one). */
const memoryCgroupOf = (pid: number) => {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.map((l) => /^\d+:memory:(.*)$/.exec(l)?.[1]).find((x) => x !== undefined);
  if (v1 !== undefined) return join('/sys/fs/cgroup/memory', v1);
  return join('/sys/fs/cgroup', lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '');
};
const resources = (linux: Json) => ({ linux: { resources: linux } });

describe('CRI cgroup v2 unified resources', () => {
  const unified = { 'memory.oom.group': '1', 'memory.swap.max': '0' };

  it.runIf(!CGROUP_V2)('refuses them on a cgroup v1 node at CreateContainer and at an update', async () => {
    const err = await grpcError(createCtr(pod, 'res', 'unified', resources({ unified })));
    expect(err.code).toBe(FAILED_PRECONDITION);
    expect(err.details).toBe(
      'config.linux.resources.unified: "memory.oom.group", "memory.swap.max" are cgroup v2 unified ' +
        "resources, but this node's cgroups are v1: runc cannot apply unified resources there",
    );
    const c = await createCtr(pod, 'res', 'plain');
    await rpc('StartContainer', { container_id: c });
    const upd = await grpcError(
      rpc('UpdateContainerResources', {
        container_id: c,
        linux: { memory_limit_in_bytes: String(96 * MiB), unified: { 'memory.oom.group': '1' } },
      }),
    );
    expect(upd.code).toBe(FAILED_PRECONDITION);
    expect(upd.details).toMatch(/^linux\.unified: "memory\.oom\.group" is a cgroup v2 unified resource/);
    // Nothing of the refused update was applied.
    const limit = readFileSync(join(memoryCgroupOf((await recordOf(c)).task.pid), 'memory.limit_in_bytes'));
    expect(limit.toString().trim()).not.toBe(String(96 * MiB));
  });

  it.runIf(CGROUP_V2)("writes them into the container's cgroup on a cgroup v2 node", async () => {
    const c = await createCtr(pod, 'res', 'unified', resources({ unified: { 'memory.oom.group': '1' } }));
    await rpc('StartContainer', { container_id: c });
    const dir = memoryCgroupOf((await recordOf(c)).task.pid);
    expect(readFileSync(join(dir, 'memory.oom.group'), 'utf8').trim()).toBe('1');
  });
});

describe('CRI memory_swap_limit_in_bytes', () => {
  // Where the kernel accounts swap, as the gateway and containerd look for it.
  const v1Swap = existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes');

  it.runIf(!CGROUP_V2 && v1Swap)('sets memory.memsw.limit_in_bytes on create and on update', async () => {
    const c = await createCtr(
      pod,
      'res',
      'swap',
      resources({
        memory_limit_in_bytes: String(64 * MiB),
        memory_swap_limit_in_bytes: String(128 * MiB),
      }),
    );
    await rpc('StartContainer', { container_id: c });
    const rec = await recordOf(c);
    expect((rec.container.spec.linux as Json).resources).toMatchObject({
      memory: { limit: 64 * MiB, swap: 128 * MiB },
    });
    const dir = memoryCgroupOf(rec.task.pid);
    const memsw = () => readFileSync(join(dir, 'memory.memsw.limit_in_bytes'), 'utf8').trim();
    expect(memsw()).toBe(String(128 * MiB));
    await rpc('UpdateContainerResources', {
      container_id: c,
      linux: { memory_limit_in_bytes: String(96 * MiB), memory_swap_limit_in_bytes: String(192 * MiB) },
    });
    expect(memsw()).toBe(String(192 * MiB));
    expect(readFileSync(join(dir, 'memory.limit_in_bytes'), 'utf8').trim()).toBe(String(96 * MiB));
    const st = (await ctrStatus(c)) as { resources: { linux: Json } };
    expect(st.resources.linux).toMatchObject({
      memory_limit_in_bytes: String(96 * MiB),
      memory_swap_limit_in_bytes: String(192 * MiB),
    });
    // Below the memory limit: refused before runc (or the kernel) sees it.
    const low = await grpcError(
      rpc('UpdateContainerResources', {
        container_id: c,
        linux: { memory_limit_in_bytes: String(96 * MiB), memory_swap_limit_in_bytes: String(64 * MiB) },
      }),
    );
    expect(low.code).toBe(INVALID_ARGUMENT);
    expect(low.details).toContain('linux.memory_swap_limit_in_bytes');
    expect(memsw()).toBe(String(192 * MiB));
  });

  it.runIf(!CGROUP_V2 && v1Swap)('gives a memory limit alone swap = memory, as containerd', async () => {
    const c = await createCtr(pod, 'res', 'noswap', resources({ memory_limit_in_bytes: String(64 * MiB) }));
    await rpc('StartContainer', { container_id: c });
    const dir = memoryCgroupOf((await recordOf(c)).task.pid);
    const memsw = () => readFileSync(join(dir, 'memory.memsw.limit_in_bytes'), 'utf8').trim();
    expect(memsw()).toBe(String(64 * MiB));
    await rpc('UpdateContainerResources', {
      container_id: c,
      linux: { memory_limit_in_bytes: String(96 * MiB) },
    });
    expect(memsw()).toBe(String(96 * MiB));
  });

  it('refuses a swap limit below the memory limit at CreateContainer', async () => {
    const err = await grpcError(
      createCtr(
        pod,
        'res',
        'lowswap',
        resources({ memory_limit_in_bytes: String(64 * MiB), memory_swap_limit_in_bytes: String(32 * MiB) }),
      ),
    );
    expect(err.code).toBe(INVALID_ARGUMENT);
    expect(err.details).toContain('config.linux.resources.memory_swap_limit_in_bytes');
  });
});

describe('CRI CDI devices and oom_score_adj', () => {
  it('refuses CDI_devices: the container would start without its device', async () => {
    const err = await grpcError(
      createCtr(pod, 'res', 'cdi', { CDI_devices: [{ name: 'vendor.com/gpu=0' }] }),
    );
    expect(err.code).toBe(UNIMPLEMENTED);
    expect(err.details).toContain('config.CDI_devices');
  });

  it('raises a negative oom_score_adj to its own score and reports the score the container has', async () => {
    const c = await createCtr(pod, 'res', 'oom', resources({ oom_score_adj: '-997' }));
    await rpc('StartContainer', { container_id: c });
    const rec = await recordOf(c);
    // The gateway and shim are this process's children and lack CAP_SYS_RESOURCE here: the
    // container has this process's score, and so do its spec and its ContainerStatus.
    const own = readFileSync('/proc/self/oom_score_adj', 'utf8').trim();
    expect(readFileSync(`/proc/${rec.task.pid}/oom_score_adj`, 'utf8').trim()).toBe(own);
    expect((rec.container.spec.process as Json).oomScoreAdj ?? 0).toBe(Number(own));
    const { status } = (await rpc('ContainerStatus', { container_id: c })) as {
      status: { resources: { linux: { oom_score_adj: unknown } } };
    };
    expect(String(status.resources.linux.oom_score_adj)).toBe(own);
    // No limits of its own in the spec: the runtime's, as containerd's CRI (the shim is this
    // process's child and has its limits).
    expect((rec.container.spec.process as Json).rlimits).toBeUndefined();
    const openFiles = (pid: number | 'self') =>
      /^Max open files\s+(\S+\s+\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1];
    expect(openFiles(rec.task.pid)).toBe(openFiles('self'));
    const high = await createCtr(pod, 'res', 'oomhigh', resources({ oom_score_adj: '500' }));
    await rpc('StartContainer', { container_id: high });
    expect(readFileSync(`/proc/${(await recordOf(high)).task.pid}/oom_score_adj`, 'utf8').trim()).toBe('500');
  });
});

describe('CRI cpuset_cpus and cpuset_mems', () => {
  /** The cpuset cgroup file of a process (v1's cpuset hierarchy, or v2's unified one). */
  const cpusetOf = (pid: number, file: 'cpus' | 'mems') => {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const v1 = lines
      .map((l) => /^\d+:(?:[^:]*,)?cpuset(?:,[^:]*)?:(.*)$/.exec(l)?.[1])
      .find((x) => x !== undefined);
    const dir =
      v1 !== undefined
        ? join('/sys/fs/cgroup/cpuset', v1)
        : join('/sys/fs/cgroup', lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '');
    return readFileSync(join(dir, `cpuset.${file}`), 'utf8').trim();
  };

  it('pins a container to the CPUs and memory nodes asked, at create and at an update', async () => {
    const c = await createCtr(pod, 'res', 'pinned', resources({ cpuset_cpus: '0', cpuset_mems: '0' }));
    await rpc('StartContainer', { container_id: c });
    const pid = (await recordOf(c)).task.pid;
    expect(cpusetOf(pid, 'cpus')).toBe('0');
    expect(cpusetOf(pid, 'mems')).toBe('0');
    expect((await ctrStatus(c)).resources).toMatchObject({ linux: { cpuset_cpus: '0', cpuset_mems: '0' } });
    await rpc('UpdateContainerResources', { container_id: c, linux: { cpuset_cpus: '0-1' } });
    expect(cpusetOf(pid, 'cpus')).toBe('0-1');
    expect((await ctrStatus(c)).resources).toMatchObject({ linux: { cpuset_cpus: '0-1', cpuset_mems: '0' } });
  });

  it('refuses a cpuset that is not a CPU list, naming the field', async () => {
    const err = await grpcError(createCtr(pod, 'res', 'badset', resources({ cpuset_cpus: 'all' })));
    expect(err.code).toBe(INVALID_ARGUMENT);
    expect(err.details).toBe(
      'config.linux.resources.cpuset_cpus must be a Linux CPU list such as "0-3,6": "all"',
    );
  });
});

describe("CRI devices (as the kubelet passes a device plugin's)", () => {
  it('gives the container host devices at their container paths, allowed with their permissions', async () => {
    const c = await createCtr(pod, 'res', 'devices', {
      devices: [
        { host_path: '/dev/zero', container_path: '/dev/plugin-zero', permissions: 'rw' },
        // Block devices runc does not allow by default (it does /dev/null, zero, tun and a few).
        { host_path: '/dev/loop7', container_path: '/dev/ro-loop', permissions: 'r' },
        { host_path: '/dev/loop6', container_path: '/dev/rw-loop', permissions: 'rw' },
        { host_path: '/dev/net', container_path: '/dev/plugin-net', permissions: 'rwm' },
      ],
    });
    await rpc('StartContainer', { container_id: c });
    const run = async (cmd: string) => {
      const r = await exec(c, ['sh', '-c', cmd]);
      return { code: r.exit_code, out: Buffer.from(r.stdout).toString() + Buffer.from(r.stderr).toString() };
    };
    // The host's node numbers, under the container path; a directory's nodes below it.
    expect((await run('stat -c "%t:%T" /dev/plugin-zero /dev/plugin-net/tun')).out).toBe('1:5\na:c8\n');
    expect(await run('head -c 3 /dev/plugin-zero | od -An -tx1')).toEqual({ code: 0, out: ' 00 00 00\n' });
    // The device cgroup allows each as asked: read only, or read and write.
    expect(await run('exec 3</dev/ro-loop && echo read-open')).toEqual({ code: 0, out: 'read-open\n' });
    const write = await run('exec 3>/dev/ro-loop');
    expect(write.code).not.toBe(0);
    expect(write.out).toMatch(/Operation not permitted/);
    expect(await run('exec 3<>/dev/rw-loop && echo rw-open')).toEqual({ code: 0, out: 'rw-open\n' });
  });

  it('refuses a host path that is no device on the node, naming it, and starts nothing', async () => {
    const c = await createCtr(pod, 'res', 'nodevice', {
      devices: [{ host_path: '/etc/hostname', container_path: '/dev/x', permissions: 'r' }],
    });
    const err = await grpcError(rpc('StartContainer', { container_id: c }));
    expect(err.code).toBe(FAILED_PRECONDITION);
    expect(err.details).toContain('device /etc/hostname is not a device node on this node');
    // Exited with StartError, as containerd marks a container whose start failed.
    expect(await ctrStatus(c)).toMatchObject({
      state: 'CONTAINER_EXITED',
      exit_code: 128,
      reason: 'StartError',
    });
  });
});
