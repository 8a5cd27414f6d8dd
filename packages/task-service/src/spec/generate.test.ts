import { type CreateContainerRequest, Resources } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PATH } from './defaults.js';
import { generateSpec, linuxResources, mergeResources } from './generate.js';

const id = 'a'.repeat(64);
const files = { hosts: '/s/hosts', resolvConf: '/s/resolv.conf', hostname: '/s/hostname' };

function gen(req: Partial<CreateContainerRequest>, image: Record<string, unknown> = {}) {
  return generateSpec(
    { id, namespace: 'default', request: { image: 'busybox', ...req }, image, files },
    'host-name',
  );
}
// biome-ignore lint/suspicious/noExplicitAny: the spec is untyped JSON; tests index into it freely
type Any = Record<string, any>;

describe('generateSpec', () => {
  it('applies containerd defaults', () => {
    const { spec, hostname } = gen({ cmd: ['true'] });
    const s = spec as Any;
    expect(hostname).toBe(id.slice(0, 12));
    expect(s.hostname).toBe(hostname);
    // Left to the container's node: its shim resolves them from its own bounding set.
    expect(s.process.capabilities).toBeUndefined();
    expect(s.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
    // Asked to inherit the runtime's limits (the CRI's containers), it sets none.
    expect((gen({ cmd: ['true'], inheritRlimits: true }).spec as Any).process.rlimits).toBeUndefined();
    expect(s.process.noNewPrivileges).toBe(false);
    expect(s.process.oomScoreAdj).toBeUndefined();
    expect(s.process.env).toContain(`PATH=${DEFAULT_PATH}`);
    expect(s.process.cwd).toBe('/');
    expect(s.process.user).toEqual({ uid: 0, gid: 0 });
    expect(s.linux.namespaces.map((n: Any) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount', 'network']);
    const dests = s.mounts.map((m: Any) => m.destination);
    for (const d of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup']) {
      expect(dests).toContain(d);
    }
    expect(s.mounts.find((m: Any) => m.destination === '/sys').options).toContain('ro');
    expect(s.mounts.find((m: Any) => m.destination === '/sys/fs/cgroup').options).toContain('ro');
    expect(s.mounts.find((m: Any) => m.destination === '/etc/hosts').source).toBe('/s/hosts');
    expect(s.mounts.find((m: Any) => m.destination === '/etc/resolv.conf').source).toBe('/s/resolv.conf');
    expect(s.linux.maskedPaths).toContain('/proc/kcore');
    expect(s.linux.readonlyPaths).toContain('/proc/sys');
    expect(s.linux.cgroupsPath).toBe(`/berth/default/${id}`);
    expect(s.linux.resources).toEqual({ devices: [{ allow: false, access: 'rwm' }] });
    expect(s.root).toEqual({ path: 'rootfs', readonly: false });
  });

  it('host network has no network namespace and the host name; a path joins a namespace', () => {
    const host = gen({ cmd: ['true'], network: 'host' });
    expect((host.spec as Any).linux.namespaces.map((n: Any) => n.type)).not.toContain('network');
    expect(host.hostname).toBe('host-name');
    const joined = gen({ cmd: ['true'], network: '/var/run/netns/x' });
    expect((joined.spec as Any).linux.namespaces).toContainEqual({
      type: 'network',
      path: '/var/run/netns/x',
    });
  });

  it('follows docker rules for entrypoint and cmd', () => {
    const image = { Entrypoint: ['/entry'], Cmd: ['a', 'b'] };
    expect(gen({}, image).args).toEqual(['/entry', 'a', 'b']);
    expect(gen({ cmd: ['c'] }, image).args).toEqual(['/entry', 'c']);
    expect(gen({ entrypoint: ['/other'] }, image).args).toEqual(['/other']);
    expect(gen({ entrypoint: [], cmd: ['sh'] }, image).args).toEqual(['sh']);
    expect(() => gen({}, {})).toThrow(/no command specified/);
  });

  it('merges env over the image and keeps the image PATH', () => {
    const { spec } = gen({ cmd: ['x'], env: ['A=2', 'C=3'] }, { Env: ['PATH=/bin', 'A=1', 'B=1'] });
    const env = (spec as Any).process.env as string[];
    // HOSTNAME first, as Docker sets it (the container's host name: its id's first 12 characters).
    expect(env.slice(0, 5)).toEqual([`HOSTNAME=${(spec as Any).hostname}`, 'PATH=/bin', 'A=2', 'B=1', 'C=3']);
    // HOME comes from the rootfs's passwd, on the container's node.
    expect(env.some((e) => e.startsWith('HOME='))).toBe(false);
  });

  it('sets HOSTNAME, the host name, under the image env and env, as containerd under an image ENV HOSTNAME', () => {
    const env = (s: ReturnType<typeof gen>) => (s.spec as Any).process.env as string[];
    expect(
      env(gen({ cmd: ['x'], hostname: 'pod' }, { Env: ['PATH=/bin', 'HOSTNAME=image', 'Z=image'] })),
    ).toEqual(['HOSTNAME=image', 'PATH=/bin', 'Z=image']);
    expect(
      env(gen({ cmd: ['x'], hostname: 'pod', env: ['Z=config'] }, { Env: ['PATH=/bin', 'Z=image'] })),
    ).toEqual(['HOSTNAME=pod', 'PATH=/bin', 'Z=config']);
  });

  it('keeps the user string for the node and the numeric ids and requested groups it knows', () => {
    const www = gen({ cmd: ['x'], user: 'www', additionalGids: [29, 4000] });
    expect(www.user).toBe('www');
    expect((www.spec as Any).process.user).toEqual({ uid: 0, gid: 0, additionalGids: [29, 4000] });
    const num = gen({ cmd: ['x'], user: '1000:1000', additionalGids: [7] });
    expect((num.spec as Any).process.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [7] });
    expect(gen({ cmd: ['x'] }, { User: 'nobody' }).user).toBe('nobody');
    expect(gen({ cmd: ['x'], user: '0' }, { User: 'nobody' }).user).toBe('0');
    expect(() => gen({ cmd: ['x'], user: 'a:b:c' })).toThrow(/invalid user "a:b:c"/);
    expect(() => gen({ cmd: ['x'], user: ':staff' })).toThrow(/invalid user/);
  });

  it('writes resource limits and bind mounts', () => {
    const { spec } = gen({
      cmd: ['x'],
      resources: { memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 20 },
      mounts: [{ source: '/data', destination: '/mnt', readonly: true }],
      readonlyRootfs: true,
      noNewPrivileges: true,
      oomScoreAdj: 100,
      workdir: '/tmp',
    });
    const s = spec as Any;
    expect(s.linux.resources.memory).toEqual({ limit: 64 * 1024 * 1024 });
    expect(s.linux.resources.cpu).toEqual({ quota: 50_000, period: 100_000 });
    expect(s.linux.resources.pids).toEqual({ limit: 20 });
    expect(s.mounts.find((m: Any) => m.destination === '/mnt')).toEqual({
      destination: '/mnt',
      type: 'bind',
      source: '/data',
      options: ['rbind', 'rprivate', 'ro'],
    });
    expect(s.root.readonly).toBe(true);
    expect(s.process.noNewPrivileges).toBe(true);
    expect(s.process.oomScoreAdj).toBe(100);
    expect(s.process.cwd).toBe('/tmp');
    expect(linuxResources({ pidsLimit: -1 })).not.toHaveProperty('pids');
  });

  it('writes the cpuset beside the CPU limits, and an update replaces it', () => {
    expect(linuxResources({ cpuShares: 512, cpusetCpus: '0-1', cpusetMems: '0' }).cpu).toEqual({
      shares: 512,
      cpus: '0-1',
      mems: '0',
    });
    expect(linuxResources({ cpusetMems: '0' }).cpu).toEqual({ mems: '0' });
    expect(mergeResources({ cpusetCpus: '0', cpusetMems: '0' }, { cpusetCpus: '1' })).toEqual({
      cpusetCpus: '1',
      cpusetMems: '0',
    });
    expect(Resources.safeParse({ cpusetCpus: '0-' }).success).toBe(false);
    expect(Resources.safeParse({ cpusetCpus: '0-3,6' }).success).toBe(true);
  });

  it('writes a memory+swap limit, unified cgroup v2 resources and a negative oom_score_adj', () => {
    const mem = 64 * 1024 * 1024;
    const unified = { 'memory.oom.group': '1', 'memory.swap.max': '0' };
    const { spec } = gen({
      cmd: ['x'],
      resources: { memoryBytes: mem, memorySwapBytes: 2 * mem, unified },
      // The node's shim raises it to its own when it cannot lower it (see the shim's prepareSpec).
      oomScoreAdj: -997,
    });
    const s = spec as Any;
    expect(s.linux.resources.memory).toEqual({ limit: mem, swap: 2 * mem });
    expect(s.linux.resources.unified).toEqual(unified);
    expect(s.process.oomScoreAdj).toBe(-997);
    expect(linuxResources({ memoryBytes: mem, memorySwapBytes: -1 }).memory).toEqual({
      limit: mem,
      swap: -1,
    });
    expect(linuxResources({ memorySwapBytes: -1 }).memory).toEqual({ swap: -1 });
    // runc 1.1 refuses even an empty `unified` on a cgroup v1 node: none is written.
    expect(linuxResources({ unified: {} })).not.toHaveProperty('unified');
  });

  it('refuses a memory+swap limit below the memory limit, or without one', () => {
    const mem = 64 * 1024 * 1024;
    expect(() => gen({ cmd: ['x'], resources: { memoryBytes: mem, memorySwapBytes: mem - 4096 } })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: `memory+swap limit ${mem - 4096} must be at least the memory limit ${mem} (or -1 for unlimited swap)`,
      }),
    );
    expect(() => linuxResources({ memorySwapBytes: mem })).toThrow(/needs a memory limit/);
    expect(linuxResources({ memoryBytes: mem, memorySwapBytes: mem }).memory).toEqual({
      limit: mem,
      swap: mem,
    });
  });

  it('merges an update: limits replaced, unified keys added to the old ones', () => {
    const old = { memoryBytes: 1 << 30, memorySwapBytes: 2 << 30, unified: { 'memory.oom.group': '1' } };
    expect(mergeResources(old, { memoryBytes: 1 << 29, unified: { 'memory.high': '1000000' } })).toEqual({
      memoryBytes: 1 << 29,
      memorySwapBytes: 2 << 30,
      unified: { 'memory.oom.group': '1', 'memory.high': '1000000' },
    });
    expect(mergeResources({ cpus: 1 }, { cpus: 2 })).toEqual({ cpus: 2 });
  });

  it('refuses an unknown capability name, in either list', () => {
    expect(() => gen({ cmd: ['x'], capAdd: ['NOPE'] })).toThrow(/unknown capability "NOPE"/);
    expect(() => gen({ cmd: ['x'], capDrop: ['cap_nope'] })).toThrow(/unknown capability "cap_nope"/);
    expect(() => gen({ cmd: ['x'], capAdd: ['net_admin', 'ALL'], capDrop: ['CAP_KILL'] })).not.toThrow();
  });

  it('joins or shares pid/ipc/uts namespaces, and replaces masked paths', () => {
    const { spec } = gen({
      cmd: ['x'],
      namespaces: { pid: '/proc/1/ns/pid', ipc: 'host' },
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: [],
    });
    const s = spec as Any;
    expect(s.linux.namespaces).toEqual([
      { type: 'pid', path: '/proc/1/ns/pid' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network' },
    ]);
    expect(s.linux.maskedPaths).toEqual(['/proc/kcore']);
    expect(s.linux.readonlyPaths).toEqual([]);
  });

  it('sets no host name in a UTS namespace it joins (its owner named it), but HOSTNAME still', () => {
    const { spec, hostname } = gen({ cmd: ['x'], hostname: 'pod', namespaces: { uts: '/proc/9/ns/uts' } });
    const s = spec as Any;
    expect(s.linux.namespaces).toContainEqual({ type: 'uts', path: '/proc/9/ns/uts' });
    expect(s).not.toHaveProperty('hostname');
    expect(hostname).toBe('pod');
    expect(s.process.env).toContain('HOSTNAME=pod');
    expect((gen({ cmd: ['x'], hostname: 'own' }).spec as Any).hostname).toBe('own');
  });

  it("sets no host name in the node's UTS namespace (runc refuses to), but HOSTNAME still", () => {
    const { spec, hostname } = gen({ cmd: ['x'], network: 'host', namespaces: { uts: 'host' } });
    const s = spec as Any;
    expect(s.linux.namespaces.map((n: Any) => n.type)).toEqual(['pid', 'ipc', 'mount']);
    expect(s).not.toHaveProperty('hostname');
    expect(hostname).toBe('host-name');
    expect(s.process.env).toContain('HOSTNAME=host-name');
  });

  it("leaves HOSTNAME to the node's shim when the host name is the node's and not known here", () => {
    const req: CreateContainerRequest = {
      image: 'busybox',
      cmd: ['x'],
      network: 'host',
      namespaces: { uts: 'host' },
    };
    const unnamed = generateSpec({ id, namespace: 'default', request: req, image: {}, files }, '');
    expect(((unnamed.spec as Any).process.env as string[]).some((e) => e.startsWith('HOSTNAME'))).toBe(false);
    const named = generateSpec(
      { id, namespace: 'default', request: { ...req, env: ['HOSTNAME=mine'] }, image: {}, files },
      '',
    );
    expect((named.spec as Any).process.env).toContain('HOSTNAME=mine');
  });

  it('privileged: every device, nothing masked, /sys writable', () => {
    const s = gen({ cmd: ['x'], privileged: true }).spec as Any;
    expect(s.linux.resources.devices).toEqual([{ allow: true, access: 'rwm' }]);
    // The device nodes are the node's: its shim adds its /dev's at task create (hostDevicesOf).
    expect(s.linux).not.toHaveProperty('devices');
    expect(s.linux.maskedPaths).toEqual([]);
    expect(s.mounts.find((m: Any) => m.destination === '/sys').options).not.toContain('ro');
  });

  it("lets the caller's own /etc/hosts or resolv.conf replace the generated one", () => {
    const s = gen({
      cmd: ['x'],
      mounts: [{ source: '/pod/hosts', destination: '/etc/hosts', readonly: true }],
    }).spec as Any;
    const hosts = s.mounts.filter((m: Any) => m.destination === '/etc/hosts');
    expect(hosts).toHaveLength(1);
    expect(hosts[0].source).toBe('/pod/hosts');
    expect(s.mounts.find((m: Any) => m.destination === '/etc/resolv.conf').source).toBe('/s/resolv.conf');
  });

  it("drops a default mount the request's own replaces, everything under /dev for its own /dev", () => {
    const dests = (req: Partial<CreateContainerRequest>) =>
      (gen({ cmd: ['x'], ...req }).spec as Any).mounts.map((m: Any) => `${m.destination} ${m.type}`);
    const shm = dests({ mounts: [{ source: '/pod/shm', destination: '/dev/shm/' }] });
    expect(shm.filter((d: string) => d.startsWith('/dev/shm'))).toEqual(['/dev/shm/ bind']);
    expect(shm).toContain('/dev tmpfs');
    // Cleaned as Go's filepath.Clean: `/dev/./` is /dev, and /dev/pts, shm and mqueue go with it.
    const dev = dests({ mounts: [{ source: '/host/dev', destination: '/dev/./' }] });
    expect(dev.filter((d: string) => d.startsWith('/dev'))).toEqual(['/dev/./ bind']);
    expect(dev).toEqual(expect.arrayContaining(['/proc proc', '/sys sysfs', '/sys/fs/cgroup cgroup']));
    const proc = dests({ mounts: [{ source: '/host/proc', destination: '/proc' }] });
    expect(proc.filter((d: string) => d.startsWith('/proc'))).toEqual(['/proc bind']);
    // A path that only starts with /dev's name is not under it.
    const devices = dests({ mounts: [{ source: '/x', destination: '/devices' }] });
    expect(devices).toEqual(expect.arrayContaining(['/dev tmpfs', '/dev/shm tmpfs', '/devices bind']));
    expect(() => gen({ cmd: ['x'], mounts: [{ source: '/x', destination: '/./' }] })).toThrow(/"\/"/);
  });

  it('mounts a parent before what is under it, whatever the request order', () => {
    const s = gen({
      cmd: ['x'],
      mounts: [
        { source: '/pod/shm', destination: '/dev/shm' },
        { source: '/a', destination: '/data/a' },
        { source: '/etc-dir', destination: '/etc' },
        { source: '/host/dev', destination: '/dev' },
        { source: '/d', destination: '/data' },
      ],
    }).spec as Any;
    expect(s.mounts.map((m: Any) => m.destination)).toEqual([
      '/proc',
      '/sys',
      '/sys/fs/cgroup',
      '/etc',
      '/dev',
      '/data',
      '/etc/hosts',
      '/etc/resolv.conf',
      '/etc/hostname',
      '/dev/shm',
      '/data/a',
    ]);
  });

  it('marks a shareable /dev/shm for the shim to make, a private one stays a tmpfs of its own', () => {
    const shmOf = (req: Partial<CreateContainerRequest>) =>
      (gen({ cmd: ['x'], ...req }).spec as Any).mounts.filter((m: Any) => m.destination === '/dev/shm');
    const tmpfs = {
      destination: '/dev/shm',
      type: 'tmpfs',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    };
    expect(shmOf({ shm: 'shareable' })).toEqual([{ ...tmpfs, source: 'berth-file:shm' }]);
    expect(shmOf({})).toEqual([{ ...tmpfs, source: 'shm' }]);
    expect(shmOf({ shm: 'private' })).toEqual([{ ...tmpfs, source: 'shm' }]);
    // The request's own /dev/shm (a pod's, bound from the node) replaces either.
    const bound = shmOf({ shm: 'shareable', mounts: [{ source: '/dev/shm', destination: '/dev/shm' }] });
    expect(bound).toEqual([
      { destination: '/dev/shm', type: 'bind', source: '/dev/shm', options: ['rbind', 'rprivate', 'rw'] },
    ]);
  });

  it('sets TERM for a terminal and refuses a relative working directory', () => {
    expect((gen({ cmd: ['x'], tty: true }).spec as Any).process.env).toContain('TERM=xterm');
    // An image's own TERM wins, as in containerd and Docker; the request's over both.
    expect((gen({ cmd: ['x'], tty: true }, { Env: ['TERM=vt100'] }).spec as Any).process.env).toContain(
      'TERM=vt100',
    );
    expect(
      (gen({ cmd: ['x'], tty: true, env: ['TERM=screen'] }, { Env: ['TERM=vt100'] }).spec as Any).process.env,
    ).toContain('TERM=screen');
    expect(() => gen({ cmd: ['x'], workdir: 'rel' })).toThrow(/must be an absolute path/);
  });
});
