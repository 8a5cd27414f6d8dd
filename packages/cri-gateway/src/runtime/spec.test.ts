import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { BerthError, Code } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { appArmorEnabled, appArmorOf } from './apparmor.js';
import { containerRequest, nodeResources, parseContainerConfig, parseResources } from './container-spec.js';
import { CriLabel, containerName, type SandboxMeta, sandboxName } from './meta.js';
import { parsePodConfig, sandboxRequest } from './sandbox-spec.js';

const md = { name: 'web', uid: 'u1', namespace: 'default', attempt: 0 };
/** The ids the gateway chose for a pod and a container (64 hex digits, as containerd's). */
const POD_ID = 'a1'.repeat(32);
const CTR_ID = 'c2'.repeat(32);

function codeOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof BerthError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a BerthError');
}

function meta(over: Partial<SandboxMeta> = {}): SandboxMeta {
  return {
    metadata: md,
    labels: {},
    annotations: {},
    hostname: 'web',
    logDirectory: '/var/log/pods/x',
    runtimeHandler: '',
    namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD', target_id: '' },
    netKey: 'k',
    netnsPath: '/run/berth/netns/k',
    cgroupParent: '/kubepods/pod1',
    createdAt: '1',
    sharedShm: true,
    ...over,
  };
}

describe('PodSandboxConfig to a pause container', () => {
  it('gives the pause container its own namespaces, the pod network, DNS, sysctls and cgroup parent', () => {
    const pod = parsePodConfig({
      metadata: md,
      hostname: 'web',
      log_directory: '/var/log/pods/x',
      dns_config: { servers: ['10.0.0.10'], searches: ['svc'], options: ['ndots:5'] },
      linux: {
        cgroup_parent: '/kubepods/pod1',
        sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
        security_context: { namespace_options: { network: 'POD', pid: 'NODE', ipc: 'POD' } },
      },
    });
    const m = meta();
    const req = sandboxRequest(pod, { id: POD_ID, image: 'pause', meta: m, netnsPath: '/run/berth/netns/k' });
    expect(req).toMatchObject({
      id: POD_ID,
      image: 'pause',
      name: sandboxName(md),
      network: '/run/berth/netns/k',
      hostname: 'web',
      namespaces: { pid: 'host', ipc: 'private', uts: 'private' },
      dns: { servers: ['10.0.0.10'], searches: ['svc'], options: ['ndots:5'] },
      sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' },
      // The sandbox id is the leaf, as containerd's CRI names it (not the task-service name).
      cgroupsPath: `/kubepods/pod1/${POD_ID}`,
    });
    expect(JSON.parse(req.labels?.[CriLabel.meta] ?? '')).toEqual(m);
    // The pod's /dev/shm: a tmpfs its shim makes where the pod's containers can bind it.
    expect(req.shm).toBe('shareable');
    expect(req.mounts).toBeUndefined();
  });

  it("puts the pause of a host-network pod in the node's network and UTS namespaces", () => {
    const pod = parsePodConfig({
      metadata: md,
      linux: { security_context: { namespace_options: { network: 'NODE', pid: 'POD', ipc: 'POD' } } },
    });
    const req = sandboxRequest(pod, { id: POD_ID, image: 'pause', meta: meta({ hostname: 'node' }) });
    expect(req).toMatchObject({
      network: 'host',
      namespaces: { pid: 'private', ipc: 'private', uts: 'host' },
    });
    expect(req.hostname).toBeUndefined();
    // No cgroup parent: berth's default cgroup (/berth/k8s.io/<id>), as before.
    expect(req.cgroupsPath).toBeUndefined();
  });

  it('refuses, naming the field, what the CNI plugins of a pod network cannot be given', () => {
    const pod = (extra: Record<string, unknown>, network = 'POD') =>
      parsePodConfig({
        metadata: md,
        linux: { security_context: { namespace_options: { network, pid: 'POD', ipc: 'POD' } } },
        ...extra,
      });
    expect(() => pod({ metadata: { ...md, name: 'a;K8S_POD_UID=x' } })).toThrow(
      /config\.metadata\.name "a;K8S_POD_UID=x" cannot be passed to the CNI plugins: a CNI_ARGS value has no ";"/,
    );
    expect(() => pod({ metadata: { ...md, namespace: 'two words' } })).toThrow(/config\.metadata\.namespace/);
    expect(() => pod({ dns_config: { options: Array.from({ length: 33 }, () => 'ndots:5') } })).toThrow(
      /config\.dns_config\.options/,
    );
    // A pod in the node's network runs no plugin: nothing to refuse.
    expect(pod({ metadata: { ...md, name: 'a;b' } }, 'NODE').metadata.name).toBe('a;b');
  });

  it("runs every pause read-only, without new privileges, at 2 cpu shares (containerd's sandbox spec)", () => {
    for (const security_context of [{}, { privileged: true }, { readonly_rootfs: false }]) {
      const req = sandboxRequest(parsePodConfig({ metadata: md, linux: { security_context } }), {
        id: POD_ID,
        image: 'pause',
        meta: meta(),
      });
      expect(req).toMatchObject({ readonlyRootfs: true, noNewPrivileges: true, resources: { cpuShares: 2 } });
    }
  });

  it("binds the node's /dev/shm, read-only, into the pause of a pod in the node's IPC namespace", () => {
    const pod = parsePodConfig({
      metadata: md,
      linux: { security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'NODE' } } },
    });
    const req = sandboxRequest(pod, { id: POD_ID, image: 'pause', meta: meta() });
    expect(req.namespaces?.ipc).toBe('host');
    expect(req.shm).toBeUndefined();
    expect(req.mounts).toEqual([{ source: '/dev/shm', destination: '/dev/shm', readonly: true }]);
  });

  it("gives the pause container the pod's seccomp filter, none when unset or privileged (as containerd)", () => {
    const seccompOf = (security_context: Record<string, unknown>) =>
      sandboxRequest(parsePodConfig({ metadata: md, linux: { security_context } }), {
        id: POD_ID,
        image: 'pause',
        meta: meta(),
      }).seccomp;
    expect(seccompOf({})).toEqual({ mode: 'unconfined' });
    expect(seccompOf({ seccomp: { profile_type: 'RuntimeDefault' } })).toEqual({ mode: 'default' });
    expect(seccompOf({ seccomp_profile_path: 'runtime/default' })).toEqual({ mode: 'default' });
    expect(seccompOf({ seccomp: { profile_type: 'Localhost', localhost_ref: '/p.json' } })).toEqual({
      mode: 'localhost',
      path: '/p.json',
    });
    expect(seccompOf({ privileged: true, seccomp: { profile_type: 'RuntimeDefault' } })).toEqual({
      mode: 'unconfined',
    });
    expect(
      codeOf(() =>
        parsePodConfig({
          metadata: md,
          linux: { security_context: { seccomp: { profile_type: 'Localhost', localhost_ref: 'rel' } } },
        }),
      ).message,
    ).toContain('must be an absolute path');
  });

  it('names a pod by its metadata: same metadata same name, another attempt another name', () => {
    expect(sandboxName(md)).toBe(sandboxName({ ...md }));
    expect(sandboxName(md)).not.toBe(sandboxName({ ...md, attempt: 1 }));
    expect(sandboxName(md)).toMatch(/^k8s-pod-[a-f0-9]{40}$/);
    expect(containerName('p', { name: 'a', attempt: 0 })).not.toBe(
      containerName('q', { name: 'a', attempt: 0 }),
    );
  });

  it('refuses bad configs naming the field', () => {
    expect(codeOf(() => parsePodConfig({}))).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: 'config.metadata is required',
    });
    expect(codeOf(() => parsePodConfig({ metadata: { ...md, uid: '' } })).message).toBe(
      'config.metadata.uid is required',
    );
    expect(
      codeOf(() => parsePodConfig({ metadata: md, linux: { cgroup_parent: '/a/../b' } })).message,
    ).toContain('config.linux.cgroup_parent');
    const hostNet = {
      security_context: { namespace_options: { network: 'NODE' } },
      sysctls: { 'net.core.somaxconn': '1' },
    };
    expect(codeOf(() => parsePodConfig({ metadata: md, linux: hostNet })).message).toContain('net.* sysctls');
    expect(
      codeOf(() => parsePodConfig({ metadata: md, port_mappings: [{ container_port: 70000 }] })).message,
    ).toContain('config.port_mappings[0].container_port');
  });
});

describe('ContainerConfig to a container in its pod', () => {
  const sandbox = {
    id: 'p'.repeat(64),
    meta: meta(),
    pid: 4242,
    filesDir: '/state/containers/k8s.io/p',
    cgroupParent: '/kubepods/pod1',
  };

  it('joins the pod namespaces, shares its files, logs under the pod log directory', () => {
    const cfg = parseContainerConfig(
      {
        metadata: { name: 'app', attempt: 2 },
        image: { image: 'busybox' },
        command: ['sh'],
        args: ['-c', 'true'],
        envs: [{ key: 'A', value: Buffer.from('1') }],
        working_dir: '/w',
        log_path: 'app/2.log',
        mounts: [{ container_path: '/data', host_path: '/srv/data', readonly: true }],
        linux: {
          resources: {
            cpu_period: '100000',
            cpu_quota: '50000',
            cpu_shares: '512',
            memory_limit_in_bytes: '67108864',
          },
          security_context: {
            run_as_user: { value: '1000' },
            run_as_group: { value: '3000' },
            supplemental_groups: ['4000'],
            capabilities: { add_capabilities: ['NET_ADMIN'], drop_capabilities: ['CHOWN'] },
            readonly_rootfs: true,
            no_new_privs: true,
            masked_paths: ['/proc/kcore'],
            namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' },
          },
        },
      },
      '/var/log/pods/x',
    );
    const req = containerRequest(cfg, {
      id: CTR_ID,
      sandbox: { ...sandbox, hostname: 'web' },
      imageName: 'docker.io/library/busybox:latest',
      meta: {} as never,
    });
    expect(req).toMatchObject({
      id: CTR_ID,
      image: 'docker.io/library/busybox:latest',
      name: containerName(sandbox.id, { name: 'app', attempt: 2 }),
      entrypoint: ['sh'],
      cmd: ['-c', 'true'],
      env: ['A=1'],
      workdir: '/w',
      user: '1000:3000',
      additionalGids: [4000],
      // The pod's: the task-service gives it as HOSTNAME under the image's Env (an image's wins).
      hostname: 'web',
      network: '/run/berth/netns/k',
      namespaces: { pid: '/proc/4242/ns/pid', ipc: '/proc/4242/ns/ipc', uts: '/proc/4242/ns/uts' },
      resources: { cpus: 0.5, cpuShares: 512, memoryBytes: 64 * 1024 * 1024 },
      capAdd: ['NET_ADMIN'],
      capDrop: ['CHOWN'],
      readonlyRootfs: true,
      noNewPrivileges: true,
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: [],
      logPath: '/var/log/pods/x/app/2.log',
      cgroupsPath: `/kubepods/pod1/${CTR_ID}`,
      labels: { [CriLabel.kind]: 'container', [CriLabel.sandboxId]: sandbox.id },
    });
    expect(req.mounts).toEqual([
      { source: '/state/containers/k8s.io/p/hosts', destination: '/etc/hosts', readonly: true },
      { source: '/state/containers/k8s.io/p/resolv.conf', destination: '/etc/resolv.conf', readonly: true },
      { source: '/state/containers/k8s.io/p/hostname', destination: '/etc/hostname', readonly: true },
      // The pod's shared memory, writable on a read-only rootfs as containerd binds it.
      { source: '/state/containers/k8s.io/p/shm', destination: '/dev/shm' },
      { source: '/srv/data', destination: '/data', readonly: true },
    ]);
    const ownShm = parseContainerConfig(
      {
        metadata: { name: 'a' },
        image: { image: 'busybox' },
        mounts: [{ container_path: '/dev/shm/', host_path: '/srv/shm' }],
      },
      '',
    );
    const own = containerRequest(ownShm, { id: CTR_ID, sandbox, imageName: 'b', meta: {} as never });
    expect(own.mounts?.filter((m) => m.destination.startsWith('/dev/shm'))).toEqual([
      { source: '/srv/shm', destination: '/dev/shm/' },
    ]);
    // A pod made before berth shared /dev/shm has no tmpfs to bind: a /dev/shm of its own, as before.
    const { sharedShm: _, ...oldMeta } = meta();
    const old = containerRequest(cfg, {
      id: CTR_ID,
      sandbox: { ...sandbox, meta: oldMeta },
      imageName: 'b',
      meta: {} as never,
    });
    expect(old.mounts?.some((m) => m.destination === '/dev/shm')).toBe(false);
    // A pod whose record has no host name: the one its hostname file holds, as its UTS namespace has.
    const nameless = containerRequest(cfg, {
      id: CTR_ID,
      sandbox: { ...sandbox, meta: meta({ hostname: '' }), hostname: 'from-file' },
      imageName: 'b',
      meta: {} as never,
    });
    expect(nameless.hostname).toBe('from-file');
    // A pod without a cgroup parent: berth's default cgroup (/berth/k8s.io/<id>), as before.
    const unparented = containerRequest(cfg, {
      id: CTR_ID,
      sandbox: { ...sandbox, cgroupParent: '' },
      imageName: 'b',
      meta: {} as never,
    });
    expect(unparented.cgroupsPath).toBeUndefined();
  });

  it('keeps its own pid namespace for CONTAINER, the node ones for NODE, and the kubelet /etc/hosts', () => {
    const cfg = parseContainerConfig(
      {
        metadata: { name: 'a' },
        image: { image: 'busybox' },
        mounts: [{ container_path: '/etc/hosts', host_path: '/var/lib/kubelet/hosts' }],
        linux: {
          security_context: { namespace_options: { network: 'NODE', pid: 'CONTAINER', ipc: 'NODE' } },
        },
      },
      '',
    );
    const hostMeta = meta({
      namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'NODE', target_id: '' },
    });
    const req = containerRequest(cfg, {
      id: CTR_ID,
      sandbox: { ...sandbox, meta: hostMeta },
      imageName: 'b',
      meta: {} as never,
    });
    expect(req).toMatchObject({
      network: 'host',
      // The node's UTS namespace, as the pause's (containerd leaves it out).
      namespaces: { pid: 'private', ipc: 'host', uts: 'host' },
      // None asked, none given (containerd's CRI too): the kubelet sends the defaults itself.
      maskedPaths: [],
      readonlyPaths: [],
    });
    expect(req.mounts?.map((m) => `${m.destination} ${m.source}`)).toEqual([
      '/etc/resolv.conf /state/containers/k8s.io/p/resolv.conf',
      '/etc/hostname /state/containers/k8s.io/p/hostname',
      // In the node's IPC namespace, the node's shared memory (the pause binds it too).
      '/dev/shm /dev/shm',
      '/etc/hosts /var/lib/kubelet/hosts',
    ]);
    expect(req.logPath).toBeUndefined();
  });

  it('asks for seccomp as containerd reads the security context', () => {
    const sc = (security_context: Record<string, unknown>) =>
      parseContainerConfig(
        { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context } },
        '',
      ).seccomp;
    expect(sc({})).toEqual({ mode: 'unconfined' });
    expect(sc({ seccomp: { profile_type: 'RuntimeDefault' } })).toEqual({ mode: 'default' });
    expect(sc({ seccomp: { profile_type: 'Localhost', localhost_ref: '/p.json' } })).toEqual({
      mode: 'localhost',
      path: '/p.json',
    });
    expect(sc({ seccomp_profile_path: 'runtime/default' })).toEqual({ mode: 'default' });
    expect(sc({ seccomp_profile_path: 'localhost//var/lib/p.json' })).toEqual({
      mode: 'localhost',
      path: '/var/lib/p.json',
    });
    expect(codeOf(() => sc({ seccomp_profile_path: '/no/prefix.json' })).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('reads the AppArmor request as containerd does, the new field and the legacy string', () => {
    const of = (security_context: Record<string, unknown>, kernel: boolean) =>
      appArmorOf(security_context, 'config.linux.security_context', kernel);
    const dflt = { mode: 'default' };
    for (const kernel of [true, false]) {
      // Nothing asked, RuntimeDefault (the message's zero value too): the runtime's default,
      // which the node's shim resolves (none where its kernel has no AppArmor).
      expect(of({}, kernel)).toEqual(dflt);
      expect(of({ apparmor: {} }, kernel)).toEqual(dflt);
      expect(of({ apparmor: { profile_type: 'RuntimeDefault' } }, kernel)).toEqual(dflt);
      expect(of({ apparmor_profile: 'runtime/default' }, kernel)).toEqual(dflt);
      expect(of({ apparmor: { profile_type: 'Unconfined' } }, kernel)).toEqual({ mode: 'unconfined' });
      expect(of({ apparmor_profile: 'unconfined' }, kernel)).toEqual({ mode: 'unconfined' });
      // The message wins over the legacy string (kubelets that send both send the same).
      expect(
        of({ apparmor: { profile_type: 'Unconfined' }, apparmor_profile: 'runtime/default' }, kernel),
      ).toEqual({ mode: 'unconfined' });
      for (const bad of [
        { apparmor_profile: 'bogus' },
        { apparmor_profile: 'localhost/' },
        { apparmor_profile: 'localhost/a b' },
        { apparmor: { profile_type: 'Localhost' } },
        { apparmor: { profile_type: 'Other' } },
      ]) {
        expect(codeOf(() => of(bad, kernel)).code, JSON.stringify(bad)).toBe(Code.INVALID_ARGUMENT);
      }
    }
    // A named profile: the node's shim checks it is loaded; a kernel without AppArmor has none.
    const localhost = { apparmor: { profile_type: 'Localhost', localhost_ref: 'p' } };
    expect(of(localhost, true)).toEqual({ mode: 'localhost', name: 'p' });
    expect(of({ apparmor_profile: 'localhost/p' }, true)).toEqual({ mode: 'localhost', name: 'p' });
    expect(codeOf(() => of(localhost, false))).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringContaining(
        `AppArmor profile "p" was asked for, but this node's kernel has no AppArmor`,
      ),
    });
    expect(codeOf(() => of({ apparmor_profile: 'localhost/p' }, false)).code).toBe(Code.FAILED_PRECONDITION);
  });

  it("carries the pod's and the container's AppArmor request to the task-service, privileged pods none", () => {
    const ctr = (security_context: Record<string, unknown>) =>
      parseContainerConfig(
        { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context } },
        '',
      ).apparmor;
    const pause = (security_context: Record<string, unknown>) =>
      sandboxRequest(parsePodConfig({ metadata: md, linux: { security_context } }), {
        id: POD_ID,
        image: 'pause',
        meta: meta(),
      }).apparmor;
    const unconfined = { apparmor: { profile_type: 'Unconfined' } };
    expect(ctr({})).toEqual({ mode: 'default' });
    expect(ctr(unconfined)).toEqual({ mode: 'unconfined' });
    expect(pause({})).toEqual({ mode: 'default' });
    expect(pause(unconfined)).toEqual({ mode: 'unconfined' });
    // The pause's request has no `privileged`: a privileged pod's default is dropped here; a
    // privileged container's by the task-service (apparmorOf), which sees its `privileged`.
    expect(pause({ privileged: true })).toEqual({ mode: 'unconfined' });
    expect(ctr({ privileged: true })).toEqual({ mode: 'default' });
    // Named profiles, of the container's and the pod's security context, on this node's kernel.
    const localhost = { apparmor: { profile_type: 'Localhost', localhost_ref: 'p' } };
    if (appArmorEnabled()) {
      expect(ctr(localhost)).toEqual({ mode: 'localhost', name: 'p' });
      expect(pause({ privileged: true, ...localhost })).toEqual({ mode: 'localhost', name: 'p' });
    } else {
      expect(codeOf(() => ctr(localhost)).code).toBe(Code.FAILED_PRECONDITION);
      expect(codeOf(() => pause(localhost)).code).toBe(Code.FAILED_PRECONDITION);
    }
  });

  it('refuses the Strict supplemental groups policy, of a pod or a container, as not implemented', () => {
    const ctr = (security_context: Record<string, unknown>) => () =>
      parseContainerConfig(
        { metadata: { name: 'c' }, image: { image: 'busybox' }, linux: { security_context } },
        '',
      );
    const pod = (security_context: Record<string, unknown>) => () =>
      parsePodConfig({ metadata: { name: 'p', uid: 'u', namespace: 'n' }, linux: { security_context } });
    for (const parse of [ctr, pod]) {
      expect(codeOf(parse({ supplemental_groups: [5], supplemental_groups_policy: 'Strict' }))).toMatchObject(
        {
          code: Code.UNIMPLEMENTED,
          message: expect.stringContaining('config.linux.security_context.supplemental_groups_policy'),
        },
      );
      expect(parse({ supplemental_groups: [5], supplemental_groups_policy: 'Merge' })).not.toThrow();
    }
  });

  it('refuses what berth cannot do, and bad input, naming the field', () => {
    const base = { metadata: { name: 'a' }, image: { image: 'b' } };
    const devices = (d: Record<string, unknown>) => () => parseContainerConfig({ ...base, devices: [d] }, '');
    expect(codeOf(devices({ host_path: '/dev/x' }))).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: 'config.devices[0].container_path is required',
    });
    expect(
      codeOf(devices({ host_path: '/dev/x', container_path: '/dev/y', permissions: 'rx' })),
    ).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: 'config.devices[0].permissions must be some of "rwm": "rx"',
    });
    expect(devices({ host_path: '/dev/x', container_path: '/dev/y' })().devices).toEqual([
      { hostPath: '/dev/x', containerPath: '/dev/y', permissions: 'rwm' },
    ]);
    const prop = {
      ...base,
      mounts: [{ container_path: '/m', host_path: '/h', propagation: 'PROPAGATION_BIDIRECTIONAL' }],
    };
    expect(parseContainerConfig(prop, '').mounts).toEqual([
      { source: '/h', destination: '/m', propagation: 'rshared' },
    ]);
    const badProp = { ...base, mounts: [{ container_path: '/m', host_path: '/h', propagation: 'SIDEWAYS' }] };
    expect(codeOf(() => parseContainerConfig(badProp, '')).code).toBe(Code.INVALID_ARGUMENT);
    expect(codeOf(() => parseContainerConfig({ ...base, log_path: '/abs.log' }, '/d')).message).toContain(
      'config.log_path',
    );
    const group = { ...base, linux: { security_context: { run_as_group: { value: '1' } } } };
    expect(codeOf(() => parseContainerConfig(group, '')).message).toContain('run_as_group');
    expect(parseResources({ cpuset_cpus: '0-1', cpuset_mems: '0' }, 'linux').resources).toMatchObject({
      cpusetCpus: '0-1',
      cpusetMems: '0',
    });
    expect(codeOf(() => parseResources({ cpuset_cpus: '0-' }, 'linux')).code).toBe(Code.INVALID_ARGUMENT);
    const userns = (mode: string) => ({
      ...base,
      linux: { security_context: { namespace_options: { userns_options: { mode } } } },
    });
    expect(codeOf(() => parseContainerConfig(userns('POD'), '')).code).toBe(Code.UNIMPLEMENTED);
    expect(parseContainerConfig(userns('NODE'), '').namespaceOptions.pid).toBe('POD');
    expect(parseResources({ oom_score_adj: '500' }, 'linux')).toEqual({ resources: {}, oomScoreAdj: 500 });
    const cdi = { ...base, CDI_devices: [{ name: 'vendor.com/gpu=0' }] };
    expect(codeOf(() => parseContainerConfig(cdi, ''))).toMatchObject({
      code: Code.UNIMPLEMENTED,
      message: expect.stringContaining('config.CDI_devices'),
    });
    expect(parseContainerConfig({ ...base, CDI_devices: [] }, '').image).toBe('b');
  });

  it('raises an oom_score_adj below its own to its own when the kernel will not let it lower one', () => {
    // The kernel says what this process may set: a child of it tries -997 on itself.
    const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim());
    const tried = spawnSync(
      'sh',
      ['-c', 'echo -997 > /proc/self/oom_score_adj; cat /proc/self/oom_score_adj'],
      {
        encoding: 'utf8',
      },
    ).stdout.trim();
    const expected = tried === '-997' ? -997 : own;
    const parsed = parseResources({ oom_score_adj: '-997' }, 'linux');
    expect(parsed).toEqual({ resources: {}, ...(expected !== 0 ? { oomScoreAdj: expected } : {}) });
    const base = { metadata: { name: 'a' }, image: { image: 'b' } };
    const c = parseContainerConfig({ ...base, linux: { resources: { oom_score_adj: '-997' } } }, '');
    expect(c.oomScoreAdj).toBe(parsed.oomScoreAdj);
  });

  it('translates unified and memory_swap_limit_in_bytes as containerd does, checking them', () => {
    const mem = String(64 << 20);
    const r = parseResources(
      {
        memory_limit_in_bytes: mem,
        memory_swap_limit_in_bytes: String(128 << 20),
        unified: { 'memory.oom.group': '1', 'memory.swap.max': '0' },
      },
      'config.linux.resources',
    );
    expect(r.resources).toEqual({
      memoryBytes: 64 << 20,
      memorySwapBytes: 128 << 20,
      unified: { 'memory.oom.group': '1', 'memory.swap.max': '0' },
    });
    expect(parseResources({ memory_swap_limit_in_bytes: '-1' }, 'linux').resources).toEqual({
      memorySwapBytes: -1,
    });
    // An update may keep the container's memory limit.
    expect(parseResources({ memory_swap_limit_in_bytes: mem }, 'linux', { update: true }).resources).toEqual({
      memorySwapBytes: 64 << 20,
    });
    const bad = (raw: Record<string, unknown>) => codeOf(() => parseResources(raw, 'linux'));
    expect(bad({ memory_limit_in_bytes: mem, memory_swap_limit_in_bytes: String(32 << 20) })).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: expect.stringContaining('linux.memory_swap_limit_in_bytes'),
    });
    expect(bad({ memory_swap_limit_in_bytes: mem }).message).toContain('without memory_limit_in_bytes');
    expect(bad({ memory_swap_limit_in_bytes: '-2' }).code).toBe(Code.INVALID_ARGUMENT);
    expect(bad({ unified: { '../memory.max': '1' } })).toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: expect.stringContaining('linux.unified'),
    });
  });

  it("refuses what the node's cgroups cannot apply: unified on v1, swap without swap accounting", () => {
    const unified = { unified: { 'memory.oom.group': '1' } };
    const v1 = { version: 1, swapAccounting: true } as const;
    expect(codeOf(() => nodeResources(unified, v1, 'config.linux.resources'))).toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message:
        'config.linux.resources.unified: "memory.oom.group" is a cgroup v2 unified resource, ' +
        "but this node's cgroups are v1: runc cannot apply unified resources there",
    });
    expect(() => nodeResources(unified, { version: 2, swapAccounting: false }, 'linux')).not.toThrow();
    const swap = { memoryBytes: 64 << 20, memorySwapBytes: 64 << 20 };
    expect(codeOf(() => nodeResources(swap, { version: 1, swapAccounting: false }, 'linux'))).toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(
        /^linux\.memory_swap_limit_in_bytes: .*no memory\.memsw\.limit_in_bytes/,
      ),
    });
    expect(nodeResources(swap, v1, 'linux')).toEqual(swap);
  });

  it('gives a memory limit without a swap limit swap = memory where swap is accounted, as containerd', () => {
    const mem = { memoryBytes: 64 << 20 };
    expect(nodeResources(mem, { version: 1, swapAccounting: true }, 'linux')).toEqual({
      memoryBytes: 64 << 20,
      memorySwapBytes: 64 << 20,
    });
    expect(nodeResources(mem, { version: 2, swapAccounting: false }, 'linux')).toEqual(mem);
    expect(nodeResources({ cpuShares: 2 }, { version: 1, swapAccounting: true }, 'linux')).toEqual({
      cpuShares: 2,
    });
  });
});
