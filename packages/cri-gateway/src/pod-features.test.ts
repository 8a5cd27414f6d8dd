import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { APPARMOR_DEFAULT_PROFILE, type AppArmorRequest, type BerthError, Code, TaskApi } from '@berth/api';
import { call, client } from '@berth/kit';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CRI_NAMESPACE } from './images/ports.js';
import { appArmorEnabled } from './runtime/apparmor.js';
import { containerName } from './runtime/meta.js';
import {
  BUSYBOX,
  createCtr,
  ctrConfig,
  ctrStatus,
  exec,
  FAILED_PRECONDITION,
  grpcError,
  type Json,
  NOT_FOUND,
  podConfig,
  rpc,
  runPod,
  startPodStack,
  until,
} from './testdata/pod-fixtures.js';
import { type RuntimeStack, runcIds } from './testdata/runtime-stack.js';

/** The cgroup version runc uses here: v2 only when /sys/fs/cgroup itself is cgroup2. */
const CGROUP_V2 = statfsSync('/sys/fs/cgroup').type === 0x63677270;

// CRI pods and containers end to end (as pods.test.ts): namespaces, security settings, updates,
// log reopening, stats, events, streamed lists, and a second gRPC implementation (Python grpcio).

let s: RuntimeStack;
let logDir: string;

/** The supplementary groups of a /proc/<pid>/status text, in the kernel's (sorted) order. */
const groupsOf = (status: string): number[] =>
  (/^Groups:\t(.*)$/m.exec(status)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);

beforeAll(async () => {
  ({ s, logDir } = await startPodStack());
}, 180_000);

afterAll(async () => {
  await s?.stop();
}, 60_000);

describe('CRI namespaces of pods and containers', () => {
  const ns = async (id: string, type: string) =>
    Buffer.from((await exec(id, ['readlink', `/proc/self/ns/${type}`])).stdout)
      .toString()
      .trim();
  const hostNs = (type: string) => readlinkSync(`/proc/self/ns/${type}`);

  it('shares the pod PID namespace when the pod asks POD: the pause process is PID 1', async () => {
    const ctrNs = { network: 'POD', pid: 'POD', ipc: 'POD' };
    const pod = await runPod('shared', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    const c = await createCtr(pod, 'shared', 'a', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    await rpc('StartContainer', { container_id: c });
    const cmdline = Buffer.from((await exec(c, ['cat', '/proc/1/cmdline'])).stdout).toString();
    expect(cmdline.split('\0').filter(Boolean)).toEqual(['/pause', '-P']);
    // The pod's security context sets no seccomp: the pause runs unfiltered, as containerd's does.
    const status = Buffer.from((await exec(c, ['cat', '/proc/1/status'])).stdout).toString();
    expect(status).toMatch(/^Seccomp:\t0$/m);
    const other = await createCtr(pod, 'shared', 'b', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    await rpc('StartContainer', { container_id: other });
    for (const t of ['pid', 'ipc', 'uts', 'net']) expect(await ns(c, t), t).toBe(await ns(other, t));
    expect(await ns(c, 'net')).not.toBe(hostNs('net'));
    // Not PID 1 here, so SIGTERM's default action ends it: 143, before the timeout.
    await rpc('StopContainer', { container_id: c, timeout: 30 });
    expect(await ctrStatus(c)).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 143, reason: 'Error' });
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it("runs the pause as the pod's user and groups, on a read-only rootfs", async () => {
    const ctrNs = { network: 'POD', pid: 'POD', ipc: 'POD' };
    const pod = await runPod('podsc', {
      linux: {
        security_context: {
          namespace_options: ctrNs,
          run_as_user: { value: 65534 },
          run_as_group: { value: 65533 },
          supplemental_groups: [4321],
          readonly_rootfs: true,
        },
      },
    });
    const c = await createCtr(pod, 'podsc', 'look', {
      linux: { security_context: { namespace_options: ctrNs } },
    });
    await rpc('StartContainer', { container_id: c });
    // The pause is PID 1 of the shared PID namespace.
    const status = Buffer.from((await exec(c, ['cat', '/proc/1/status'])).stdout).toString();
    expect(status).toMatch(/^Uid:\t65534\t65534\t65534\t65534$/m);
    expect(status).toMatch(/^Gid:\t65533\t65533\t65533\t65533$/m);
    // The primary group is among the supplementary ones, as containerd sets them (CVE-2023-25173).
    expect(groupsOf(status)).toEqual([4321, 65533]);
    const r = await rpc<{ info: { info: string } }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
      verbose: true,
    });
    const pausePid = (JSON.parse(r.info.info) as { task: { pid: number } }).task.pid;
    const root = readFileSync(`/proc/${pausePid}/mountinfo`, 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter((f) => f[4] === '/')
      .at(-1);
    expect(root?.[5]?.split(',')).toContain('ro');
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it("writes a pod's resolv.conf from DNS searches and options alone, as containerd does", async () => {
    const pod = await runPod('dnsonly', {
      dns_config: { servers: [], searches: ['only.example'], options: ['ndots:2'] },
    });
    const c = await createCtr(pod, 'dnsonly', 'look');
    await rpc('StartContainer', { container_id: c });
    const resolv = Buffer.from((await exec(c, ['cat', '/etc/resolv.conf'])).stdout).toString();
    expect(resolv).toBe('search only.example\noptions ndots:2\n');
    await rpc('StopPodSandbox', { pod_sandbox_id: pod });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('runs a host-network pod in the node network with the node host name', async () => {
    const host = { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' };
    const pod = await runPod('hostnet', {
      hostname: '',
      dns_config: null,
      linux: { security_context: { namespace_options: host } },
    });
    const c = await createCtr(pod, 'hostnet', 'a', {
      linux: { security_context: { namespace_options: host } },
    });
    await rpc('StartContainer', { container_id: c });
    expect(await ns(c, 'net')).toBe(hostNs('net'));
    // The node's UTS namespace too, the pause's and the container's, as containerd leaves it out.
    const status = await rpc<{ info: { info: string } }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
      verbose: true,
    });
    const pausePid = (JSON.parse(status.info.info) as { task: { pid: number } }).task.pid;
    expect(readlinkSync(`/proc/${pausePid}/ns/uts`)).toBe(hostNs('uts'));
    expect(await ns(c, 'uts')).toBe(hostNs('uts'));
    // TARGET: a debug container in the PID namespace of a container that has its own.
    const target = { ...host, pid: 'TARGET', target_id: c };
    const dbg = await createCtr(pod, 'hostnet', 'debug', {
      linux: { security_context: { namespace_options: target } },
    });
    await rpc('StartContainer', { container_id: dbg });
    expect(await ns(dbg, 'pid')).toBe(await ns(c, 'pid'));
    expect(await ns(c, 'pid')).not.toBe(hostNs('pid'));
    expect(Buffer.from((await exec(c, ['hostname'])).stdout).toString()).toBe(`${hostname()}\n`);
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status.linux).toMatchObject({ namespaces: { options: { ...host, target_id: '' } } });
    // The node's interfaces are not the pod's: no network usage, as containerd.
    const stats = await rpc<{ stats: { linux: { network: unknown; cpu: unknown } } }>('PodSandboxStats', {
      pod_sandbox_id: pod,
    });
    expect(stats.stats.linux.cpu).not.toBeNull();
    expect(stats.stats.linux.network).toBeNull();
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
    expect((await grpcError(ctrStatus(c))).code).toBe(NOT_FOUND);
  });
});

describe('CRI container settings, updates, log reopening and stats', () => {
  let pod: string;
  const parent = `/berth-cri-test-${process.pid}`;
  // Ignored (berth has no SELinux support), as containerd ignores it on a host without SELinux.
  const selinux = { user: 'system_u', role: 'system_r', type: 'container_t', level: 's0:c1,c2' };

  beforeAll(async () => {
    pod = await runPod('opts', {
      linux: {
        cgroup_parent: parent,
        sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
        security_context: {
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
          selinux_options: selinux,
        },
      },
    });
  });

  afterAll(async () => {
    if (pod) {
      const { containers } = await rpc<{ containers: { id: string }[] }>('ListContainers', {
        filter: { pod_sandbox_id: pod },
      });
      await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
      // The records go in the call; the task-service deletes the tasks (and runc their cgroups) after.
      const ids = [pod, ...containers.map((c) => c.id)];
      await until('the pod tasks to be deleted', () => !runcIds(s.stateRoot).some((id) => ids.includes(id)));
    }
    // runc removes each container's cgroup; the parent is the kubelet's to remove, so the test's.
    for (const d of [
      join('/sys/fs/cgroup', parent),
      ...readdirSync('/sys/fs/cgroup').map((c) => join('/sys/fs/cgroup', c, parent)),
    ]) {
      if (existsSync(d)) rmdirSync(d);
    }
  });

  /** The host pid of a container's task (from the verbose status: berth's record). */
  const pidOf = async (id: string) => {
    const r = await rpc<{ info: { info: string } }>('ContainerStatus', { container_id: id, verbose: true });
    return (JSON.parse(r.info.info) as { task: { pid: number } }).task.pid;
  };
  /** The cgroup path of a process, in the memory hierarchy (cgroup v1) or the unified one (v2). */
  const cgroupOf = (pid: number) => {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const v1 = lines.map((l) => /^\d+:memory:(.*)$/.exec(l)?.[1]).find((x) => x !== undefined);
    const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '';
    return v1 !== undefined
      ? { path: v1, memoryLimit: join('/sys/fs/cgroup/memory', v1, 'memory.limit_in_bytes') }
      : { path: v2, memoryLimit: join('/sys/fs/cgroup', v2, 'memory.max') };
  };

  /**
   * Checks that the process is in the cgroup at `path` in every controller's hierarchy (cgroup
   * v1) or in the unified one (v2), and that each is that directory under the hierarchy's mount.
   */
  const expectCgroupAt = (pid: number, path: string) => {
    const seen: string[] = [];
    for (const l of readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
      const [, ctrls = '', at = ''] = /^\d+:([^:]*):(.*)$/.exec(l) ?? [];
      // v1's named hierarchies (name=systemd) are not runc's to place; v2's is on a v1 host.
      if (ctrls.startsWith('name=') || (ctrls === '' && !CGROUP_V2)) continue;
      expect(at, `${ctrls || 'unified'} of process ${pid}`).toBe(path);
      const dir = join('/sys/fs/cgroup', ctrls, path);
      expect(existsSync(dir), dir).toBe(true);
      seen.push(ctrls);
    }
    if (!CGROUP_V2) expect(seen).toEqual(expect.arrayContaining(['memory', 'pids']));
    else expect(seen).toEqual(['']);
  };

  it('applies user, groups, read-only rootfs, sysctls and the cgroup parent', async () => {
    const c = await createCtr(pod, 'opts', 'user', {
      linux: {
        security_context: {
          run_as_user: { value: 1000 },
          run_as_group: { value: 2000 },
          supplemental_groups: [3000],
          readonly_rootfs: true,
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
        },
      },
    });
    await rpc('StartContainer', { container_id: c });
    const id = Buffer.from((await exec(c, ['id'])).stdout).toString();
    expect(id).toMatch(/^uid=1000 gid=2000 groups=.*3000/);
    const status = Buffer.from((await exec(c, ['cat', '/proc/self/status'])).stdout).toString();
    expect(groupsOf(status)).toEqual([2000, 3000]);
    expect((await exec(c, ['touch', '/x'])).exit_code).not.toBe(0);
    expect((await ctrStatus(c)).user).toEqual({
      linux: { uid: '1000', gid: '2000', supplemental_groups: ['2000', '3000'] },
    });
    const sysctl = await exec(c, ['cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start']);
    expect(Buffer.from(sysctl.stdout).toString()).toBe('0\n');
    // Where containerd's CRI puts them with cgroupfs: the leaf is the CRI id, in every hierarchy.
    expectCgroupAt(await pidOf(c), `${parent}/${c}`);
    const pause = await rpc<{ info: { info: string } }>('PodSandboxStatus', {
      pod_sandbox_id: pod,
      verbose: true,
    });
    expectCgroupAt((JSON.parse(pause.info.info) as { task: { pid: number } }).task.pid, `${parent}/${pod}`);
  });

  it('keeps the cgroup of a container made before its id named it: stats and updates find it', async () => {
    // Made as the previous gateway made it: a task-service id of its own choosing, and the cgroup
    // named after the task-service name (<cgroup_parent>/k8s-ctr-<hash>).
    const made = await createCtr(pod, 'opts', 'prior');
    const tasks = client(s.nc, TaskApi, { namespace: CRI_NAMESPACE });
    const { config } = (await tasks['get-container']({ id: made })).container;
    await rpc('RemoveContainer', { container_id: made });
    const name = containerName(pod, { name: 'prior', attempt: 1 });
    const { id: _, ...old } = config;
    const c = (await tasks['create-container']({ ...old, name, cgroupsPath: `${parent}/${name}` })).id;
    await rpc('StartContainer', { container_id: c });
    const pid = await pidOf(c);
    expectCgroupAt(pid, `${parent}/${name}`);
    await rpc('UpdateContainerResources', {
      container_id: c,
      linux: { memory_limit_in_bytes: String(80 * 1024 * 1024) },
    });
    expect(readFileSync(cgroupOf(pid).memoryLimit, 'utf8').trim()).toBe(String(80 * 1024 * 1024));
    const st = await rpc<{ stats: { memory: { working_set_bytes: { value: string } } } }>('ContainerStats', {
      container_id: c,
    });
    expect(BigInt(st.stats.memory.working_set_bytes.value)).toBeGreaterThan(0n);
  });

  it('runs a pod and a container with SELinux options, none of them in the spec on a host without SELinux', async () => {
    const c = await createCtr(pod, 'opts', 'selinux', {
      linux: {
        security_context: {
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
          selinux_options: selinux,
        },
      },
    });
    await rpc('StartContainer', { container_id: c });
    expect((await ctrStatus(c)).state).toBe('CONTAINER_RUNNING');
    const st = await rpc<{ status: Json }>('PodSandboxStatus', { pod_sandbox_id: pod });
    expect(st.status.state).toBe('SANDBOX_READY');
    // The specs runc ran them with: no process label, no mount label, no context= mount option.
    for (const id of [pod, c]) {
      const spec = JSON.parse(readFileSync(join(s.stateRoot, 'tasks', 'k8s.io', id, 'config.json'), 'utf8'));
      expect(spec.process.selinuxLabel, id).toBeUndefined();
      expect(spec.linux.mountLabel, id).toBeUndefined();
      expect(JSON.stringify(spec.mounts), id).not.toContain('context=');
      expect(JSON.stringify(spec), id).not.toContain('container_t');
    }
  });

  it("asks the node's shim for AppArmor as containerd reads it, which applies what this kernel has", async () => {
    const aa = appArmorEnabled();
    const asks: [string, Json, AppArmorRequest][] = [
      ['aa-none', {}, { mode: 'default' }],
      ['aa-default', { apparmor: { profile_type: 'RuntimeDefault' } }, { mode: 'default' }],
      ['aa-legacy', { apparmor_profile: 'runtime/default' }, { mode: 'default' }],
      ['aa-unconfined', { apparmor: { profile_type: 'Unconfined' } }, { mode: 'unconfined' }],
    ];
    const nsOpts = { network: 'POD', pid: 'CONTAINER', ipc: 'POD' };
    const record = async (id: string) =>
      (await call(s.nc, TaskApi, 'get-container', { id }, { namespace: CRI_NAMESPACE })).container;
    const profileOf = (id: string) =>
      JSON.parse(readFileSync(join(s.stateRoot, 'tasks', 'k8s.io', id, 'config.json'), 'utf8')).process
        .apparmorProfile;
    // The pause of a pod that asks nothing: the default.
    expect((await record(pod)).config.apparmor).toEqual({ mode: 'default' });
    expect(profileOf(pod)).toBe(aa ? APPARMOR_DEFAULT_PROFILE : undefined);
    for (const [name, ask, stored] of asks) {
      const c = await createCtr(pod, 'opts', name, {
        linux: { security_context: { namespace_options: nsOpts, ...ask } },
      });
      await rpc('StartContainer', { container_id: c });
      expect((await ctrStatus(c)).state, name).toBe('CONTAINER_RUNNING');
      // The request, kept in the task-service's record; the profile the shim put in the spec.
      expect((await record(c)).config.apparmor, name).toEqual(stored);
      const applied = aa && stored.mode === 'default' ? APPARMOR_DEFAULT_PROFILE : undefined;
      expect(profileOf(c), name).toBe(applied);
    }
    // A named profile: refused by the gateway on a kernel without AppArmor, as containerd does.
    const localhost = { apparmor: { profile_type: 'Localhost', localhost_ref: 'berth-test-absent' } };
    if (!aa) {
      const err = await grpcError(
        createCtr(pod, 'opts', 'aa-named', {
          linux: { security_context: { namespace_options: nsOpts, ...localhost } },
        }),
      );
      expect(err.code).toBe(FAILED_PRECONDITION);
      expect(err.details).toContain(`AppArmor profile "berth-test-absent" was asked for`);
    }
    // Past the gateway, the task-service hands the request to the node's shim at task create,
    // which refuses it: no AppArmor in this kernel, or no such profile loaded.
    const opts = { namespace: CRI_NAMESPACE };
    const c = await call(
      s.nc,
      TaskApi,
      'create-container',
      {
        image: BUSYBOX,
        name: `aa-named-${process.pid}`,
        network: 'none',
        apparmor: { mode: 'localhost', name: 'berth-test-absent' },
      },
      opts,
    );
    try {
      const err = await call(s.nc, TaskApi, 'create', { id: c.id }, opts).then(
        () => undefined,
        (e: unknown) => e as BerthError,
      );
      expect(err?.code).toBe(Code.FAILED_PRECONDITION);
      expect(err?.message).toMatch(
        aa
          ? /AppArmor profile "berth-test-absent" is not loaded on node/
          : /AppArmor profile "berth-test-absent" was asked for, but the kernel of node ".*" has no AppArmor/,
      );
    } finally {
      await call(s.nc, TaskApi, 'delete-container', { id: c.id, force: true }, opts);
    }
  });

  it("gives a privileged container the host's device nodes, and an unprivileged one none of them", async () => {
    // A host device runc does not make in every container (its defaults: null, zero, full, tty,
    // random, urandom, ptmx, console).
    const path = ['/dev/kmsg', '/dev/loop-control', '/dev/fuse', '/dev/tty0'].find((p) => existsSync(p));
    if (!path) throw new Error('this host has none of /dev/kmsg, /dev/loop-control, /dev/fuse, /dev/tty0');
    const st = statSync(path);
    const rdev = BigInt(st.rdev);
    const host = [
      st.isCharacterDevice() ? 'character special file' : 'block special file',
      (((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)).toString(16),
      ((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)).toString(16),
      (st.mode & 0o7777).toString(8),
      st.uid,
      st.gid,
    ].join(' ');
    const withSc = (security_context: Json) => ({
      linux: {
        security_context: {
          namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' },
          ...security_context,
        },
      },
    });
    const priv = await createCtr(pod, 'opts', 'devices-privileged', withSc({ privileged: true }));
    const plain = await createCtr(pod, 'opts', 'devices-plain', withSc({}));
    await rpc('StartContainer', { container_id: priv });
    await rpc('StartContainer', { container_id: plain });
    const probe = ['stat', '-c', '%F %t %T %a %u %g', path];
    const seen = await exec(priv, probe);
    expect(Buffer.from(seen.stderr).toString()).toBe('');
    expect(Buffer.from(seen.stdout).toString()).toBe(`${host}\n`);
    // Not only the one device: the privileged container's /dev lists what the host's does.
    const ls = Buffer.from((await exec(priv, ['ls', '/dev'])).stdout)
      .toString()
      .split('\n');
    const hostDevs = readdirSync('/dev').filter((n) => {
      const s = lstatSync(join('/dev', n));
      return (s.isCharacterDevice() || s.isBlockDevice()) && n !== 'console';
    });
    expect(ls).toEqual(expect.arrayContaining(hostDevs));
    const absent = await exec(plain, probe);
    expect(absent.exit_code).not.toBe(0);
    expect(Buffer.from(absent.stderr).toString()).toContain('No such file or directory');
  });

  it("updates a running container's memory limit in its cgroup", async () => {
    const c = await createCtr(pod, 'opts', 'limits');
    await rpc('StartContainer', { container_id: c });
    await rpc('UpdateContainerResources', {
      container_id: c,
      linux: { memory_limit_in_bytes: String(96 * 1024 * 1024) },
    });
    const max = readFileSync(cgroupOf(await pidOf(c)).memoryLimit, 'utf8').trim();
    expect(max).toBe(String(96 * 1024 * 1024));
    const st = (await ctrStatus(c)) as { resources: { linux: { memory_limit_in_bytes: string } } };
    expect(st.resources.linux.memory_limit_in_bytes).toBe(String(96 * 1024 * 1024));
  });

  it('reports why a container exited: Completed, Error, OOMKilled', async () => {
    const run = async (name: string, script: string, linux: Json = {}) => {
      const c = await createCtr(pod, 'opts', name, { command: ['sh', '-c', script], ...linux });
      await rpc('StartContainer', { container_id: c });
      return until(`${name} to exit`, async () => {
        const st = await ctrStatus(c);
        return st.state === 'CONTAINER_EXITED' ? st : undefined;
      });
    };
    expect(await run('done', 'exit 0')).toMatchObject({ exit_code: 0, reason: 'Completed' });
    expect(await run('fail', 'exit 3')).toMatchObject({ exit_code: 3, reason: 'Error' });
    const oom = await run('oom', 'tail /dev/zero', {
      linux: {
        resources: { memory_limit_in_bytes: String(16 * 1024 * 1024) },
        security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
      },
    });
    expect(oom).toMatchObject({ exit_code: 137, reason: 'OOMKilled' });
  });

  it('reopens the log after the kubelet rotated it, losing no line', async () => {
    const c = await createCtr(pod, 'opts', 'ticker', {
      command: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.02; done'],
    });
    await rpc('StartContainer', { container_id: c });
    const log = join(logDir, 'opts', 'ticker', '0.log');
    /** The tick numbers of a log file's whole lines. */
    const ticks = (f: string) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .slice(0, -1)
        .map((l) => Number(/ stdout F tick-(\d+)$/.exec(l)?.[1]));
    await until('a first tick', () => existsSync(log) && ticks(log).length > 0);
    renameSync(log, `${log}.1`);
    await rpc('ReopenContainerLog', { container_id: c });
    // Answered once the new file took over: the rotated one is closed, and both together hold
    // every tick, in order, with none twice.
    const rotated = ticks(`${log}.1`);
    await until('ticks in the new log', () => existsSync(log) && ticks(log).length >= 5);
    expect(ticks(`${log}.1`)).toEqual(rotated);
    const all = [...rotated, ...ticks(log)];
    expect(all).toEqual(all.map((_, i) => i + 1));
  });

  it('reports container and pod stats', async () => {
    const ctrs = (
      await rpc<{ containers: { id: string; metadata: { name: string } }[] }>('ListContainers', {
        filter: { pod_sandbox_id: pod, state: { state: 'CONTAINER_RUNNING' } },
      })
    ).containers;
    const ticker = ctrs.find((x) => x.metadata.name === 'ticker')?.id ?? '';
    type Stats = {
      attributes: { id: string };
      cpu: { usage_core_nano_seconds: { value: string }; usage_nano_cores: { value: string } | null };
      memory: { working_set_bytes: { value: string }; page_faults: { value: string } | null };
      writable_layer: { fs_id: { mountpoint: string }; used_bytes: { value: string } } | null;
    };
    const first = (await rpc<{ stats: Stats }>('ContainerStats', { container_id: ticker })).stats;
    expect(first.attributes.id).toBe(ticker);
    expect(BigInt(first.cpu.usage_core_nano_seconds.value)).toBeGreaterThan(0n);
    expect(BigInt(first.memory.working_set_bytes.value)).toBeGreaterThan(0n);
    expect(BigInt(first.memory.page_faults?.value ?? '0')).toBeGreaterThan(0n);
    expect(first.writable_layer?.fs_id.mountpoint).toBe(join(s.stateRoot, 'snapshots'));
    const second = await until('a second cpu sample', async () => {
      const st = (await rpc<{ stats: Stats }>('ContainerStats', { container_id: ticker })).stats;
      return st.cpu.usage_nano_cores ? st : undefined;
    });
    expect(BigInt(second.cpu.usage_nano_cores?.value ?? '0')).toBeGreaterThanOrEqual(0n);
    const listed = (await rpc<{ stats: Stats[] }>('ListContainerStats', { filter: { pod_sandbox_id: pod } }))
      .stats;
    expect(listed.map((x) => x.attributes.id).sort()).toEqual(ctrs.map((x) => x.id).sort());
    type PodStats = {
      attributes: { id: string };
      linux: {
        cpu: { usage_nano_cores: { value: string } | null };
        memory: { page_faults: { value: string } | null };
        network: {
          default_interface: { name: string; rx_bytes: { value: string }; tx_bytes: { value: string } };
        } | null;
        process: { process_count: { value: string } };
        containers: Stats[];
      };
    };
    const podStatsNow = async () =>
      (await rpc<{ stats: PodStats }>('PodSandboxStats', { pod_sandbox_id: pod })).stats;
    await podStatsNow();
    // The second sample of the pod has a rate.
    const podStats = await until('a second pod cpu sample', async () => {
      const st = await podStatsNow();
      return st.linux.cpu.usage_nano_cores ? st : undefined;
    });
    expect(podStats.attributes.id).toBe(pod);
    expect(BigInt(podStats.linux.memory.page_faults?.value ?? '0')).toBeGreaterThan(0n);
    // The pod's own network namespace, whose eth0 the CNI bridge made (its ARP and the like
    // have gone through it by now).
    expect(podStats.linux.network?.default_interface.name).toBe('eth0');
    expect(BigInt(podStats.linux.network?.default_interface.tx_bytes.value ?? '0')).toBeGreaterThan(0n);
    expect(podStats.linux.containers).toHaveLength(ctrs.length);
    expect(Number(podStats.linux.process.process_count.value)).toBeGreaterThan(ctrs.length);
    const pods = (await rpc<{ stats: { attributes: { id: string } }[] }>('ListPodSandboxStats', {})).stats;
    expect(pods.map((x) => x.attributes.id)).toEqual([pod]);
  });
});

describe('CRI container events and streamed lists', () => {
  type Ev = {
    container_id: string;
    container_event_type: string;
    created_at: string;
    pod_sandbox_status: { id: string } | null;
    containers_statuses: { id: string; state: string }[];
  };

  it('streams pod and container events until the client cancels', async () => {
    const open = (s.client.runtime as unknown as Record<string, (r: unknown) => ClientReadableStream<Ev>>)
      .GetContainerEvents;
    const stream = open?.call(s.client.runtime, {});
    if (!stream) throw new Error('no GetContainerEvents');
    const got: Ev[] = [];
    stream.on('data', (e: Ev) => got.push(e));
    const ended = new Promise<number>((r) => stream.on('status', (st: { code: number }) => r(st.code)));
    stream.on('error', () => undefined);
    const pod = await runPod('events');
    const c = await createCtr(pod, 'events', 'a');
    await rpc('StartContainer', { container_id: c });
    await rpc('StopContainer', { container_id: c, timeout: 0 });
    await rpc('RemoveContainer', { container_id: c });
    const seq = (id: string) => got.filter((e) => e.container_id === id).map((e) => e.container_event_type);
    await until('the container deleted event', () => seq(c).includes('CONTAINER_DELETED_EVENT'));
    expect(seq(c)).toEqual([
      'CONTAINER_CREATED_EVENT',
      'CONTAINER_STARTED_EVENT',
      'CONTAINER_STOPPED_EVENT',
      'CONTAINER_DELETED_EVENT',
    ]);
    expect(seq(pod).slice(0, 2)).toEqual(['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT']);
    const started = got.find(
      (e) => e.container_id === c && e.container_event_type === 'CONTAINER_STARTED_EVENT',
    );
    expect(started?.pod_sandbox_status?.id).toBe(pod);
    expect(started?.containers_statuses.map((x) => x.id)).toEqual([c]);
    expect(BigInt(started?.created_at ?? '0')).toBeGreaterThan(0n);
    stream.cancel();
    expect(await ended).toBe(1);
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });

  it('streams pods and containers as their List RPCs answer them', async () => {
    const pod = await runPod('streamed');
    const c = await createCtr(pod, 'streamed', 'a');
    const pods = await s.client.stream<{ pod_sandboxes: { id: string }[] }>(
      s.client.runtime,
      'StreamPodSandboxes',
      {
        filter: { id: pod },
      },
    );
    expect(pods.status.code).toBe(0);
    expect(pods.messages.flatMap((m) => m.pod_sandboxes.map((p) => p.id))).toEqual([pod]);
    const ctrs = await s.client.stream<{ containers: { id: string }[] }>(
      s.client.runtime,
      'StreamContainers',
      {
        filter: { pod_sandbox_id: pod },
      },
    );
    expect(ctrs.messages.flatMap((m) => m.containers.map((x) => x.id))).toEqual([c]);
    const none = await s.client.stream(s.client.runtime, 'StreamContainerStats', {
      filter: { pod_sandbox_id: pod },
    });
    expect(none).toEqual({ messages: [], status: expect.objectContaining({ code: 0 }) });
    await rpc('RemovePodSandbox', { pod_sandbox_id: pod });
  });
});

describe('CRI with a gRPC C-core client (Python grpcio)', () => {
  it('runs a pod and a container as a non-JavaScript client sees it', async () => {
    // Debian's protoc (3.21) predates the debug_redact field option; it does not change the wire.
    const proto = readFileSync(join(import.meta.dirname, '..', 'proto', 'api.proto'), 'utf8');
    writeFileSync(join(s.root, 'api.proto'), proto.replace(/\s*\[debug_redact = true\]/g, ''));
    const pb = join(s.root, 'cri.pb');
    execFileSync('protoc', [
      '--include_imports',
      `--descriptor_set_out=${pb}`,
      `-I${s.root}`,
      join(s.root, 'api.proto'),
    ]);
    const calls = [
      { service: 'RuntimeService', method: 'Version', request: {} },
      { service: 'RuntimeService', method: 'RunPodSandbox', request: { config: podConfig('py') } },
      {
        service: 'RuntimeService',
        method: 'CreateContainer',
        request: {
          pod_sandbox_id: '$1.pod_sandbox_id',
          config: ctrConfig('a'),
          sandbox_config: podConfig('py'),
        },
      },
      { service: 'RuntimeService', method: 'StartContainer', request: { container_id: '$2.container_id' } },
      {
        service: 'RuntimeService',
        method: 'ExecSync',
        request: { container_id: '$2.container_id', cmd: ['sh', '-c', 'echo py; exit 4'], timeout: 10 },
      },
      { service: 'RuntimeService', method: 'ContainerStatus', request: { container_id: '$2.container_id' } },
      {
        service: 'RuntimeService',
        method: 'ListPodSandbox',
        request: { filter: { label_selector: { app: 'py' } } },
      },
      {
        service: 'RuntimeService',
        method: 'StopPodSandbox',
        request: { pod_sandbox_id: '$1.pod_sandbox_id' },
      },
      {
        service: 'RuntimeService',
        method: 'RemovePodSandbox',
        request: { pod_sandbox_id: '$1.pod_sandbox_id' },
      },
      {
        service: 'RuntimeService',
        method: 'PodSandboxStatus',
        request: { pod_sandbox_id: '$1.pod_sandbox_id' },
      },
    ];
    // Asynchronously: the gateway answers from this very process.
    const py = spawn('/usr/bin/python3', [
      join(import.meta.dirname, 'testdata', 'cri-py-client.py'),
      s.gateway.socket,
      pb,
    ]);
    let out = '';
    let err = '';
    py.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    py.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    py.stdin.end(JSON.stringify(calls));
    const [code] = (await once(py, 'exit')) as [number];
    expect(code, err).toBe(0);
    type R = { code: number; details: string; response: Record<string, unknown> };
    const r = JSON.parse(out) as R[];
    expect(r.slice(0, 9).map((x) => [x.code, x.details])).toEqual(new Array(9).fill([0, '']));
    expect(r[0]?.response).toMatchObject({ runtime_name: 'berth', runtime_api_version: 'v1' });
    const pod = r[1]?.response.pod_sandbox_id as string;
    expect(pod).toMatch(/^[a-f0-9]{64}$/);
    expect(Buffer.from(r[4]?.response.stdout as string, 'base64').toString()).toBe('py\n');
    expect(r[4]?.response.exit_code).toBe(4);
    expect(r[5]?.response.status).toMatchObject({
      id: r[2]?.response.container_id,
      state: 'CONTAINER_RUNNING',
      metadata: { name: 'a' },
      labels: { ctr: 'a' },
    });
    expect((r[6]?.response.items as { id: string }[] | undefined)?.map((i) => i.id)).toEqual([pod]);
    expect(r[9]).toMatchObject({ code: NOT_FOUND, details: `pod sandbox "${pod}" not found` });
  });
});
