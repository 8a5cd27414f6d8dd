import { BerthError, type CreateContainerRequest } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPS, DEFAULT_PATH } from './defaults.js';
import { capabilities, capsFromMask, generateSpec, linuxResources } from './generate.js';
import { parseGroup, parsePasswd, resolveUser } from './user.js';

const id = 'a'.repeat(64);
const passwd = parsePasswd(
  'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbad line\nnobody:x:65534:65534::/nonexistent:/bin/false\n',
);
const group = parseGroup('root:x:0:\nwww:x:33:\nstaff:x:50:www,nobody\naudio:x:29:www\n');
const files = { hosts: '/s/hosts', resolvConf: '/s/resolv.conf', hostname: '/s/hostname' };

function gen(req: Partial<CreateContainerRequest>, image: Record<string, unknown> = {}) {
  return generateSpec(
    { id, namespace: 'default', request: { image: 'busybox', ...req }, image, passwd, group, files },
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
    expect(s.process.capabilities.bounding).toEqual([...DEFAULT_CAPS]);
    expect(s.process.capabilities.effective).toEqual([...DEFAULT_CAPS]);
    expect(s.process.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
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
    expect(env.slice(0, 4)).toEqual(['PATH=/bin', 'A=2', 'B=1', 'C=3']);
    expect(env).toContain('HOME=/root');
  });

  it('resolves users and groups through the rootfs files', () => {
    expect((gen({ cmd: ['x'], user: 'www' }).spec as Any).process.user).toEqual({
      uid: 33,
      gid: 33,
      additionalGids: [50, 29],
    });
    expect((gen({ cmd: ['x'], user: '1000' }).spec as Any).process.user).toEqual({ uid: 1000, gid: 0 });
    expect((gen({ cmd: ['x'], user: 'www:staff' }).spec as Any).process.user.gid).toBe(50);
    expect((gen({ cmd: ['x'] }, { User: 'nobody' }).spec as Any).process.user.uid).toBe(65534);
    expect(() => gen({ cmd: ['x'], user: 'ghost' })).toThrow(/user "ghost" not found/);
    expect(() => gen({ cmd: ['x'], user: 'www:nogroup' })).toThrow(/group "nogroup" not found/);
    expect(() => resolveUser('a:b:c', passwd, group)).toThrow(BerthError);
  });

  it("adds the requested supplemental groups to the user's own, once each", () => {
    expect((gen({ cmd: ['x'], user: 'www', additionalGids: [29, 4000] }).spec as Any).process.user).toEqual({
      uid: 33,
      gid: 33,
      additionalGids: [50, 29, 4000],
    });
    expect((gen({ cmd: ['x'], user: '1000:1000', additionalGids: [7] }).spec as Any).process.user).toEqual({
      uid: 1000,
      gid: 1000,
      additionalGids: [7],
    });
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

  it('adds and drops capabilities by either spelling, and refuses unknown ones', () => {
    const c = capabilities(['net_admin'], ['CAP_KILL', 'MKNOD']);
    expect(c).toContain('CAP_NET_ADMIN');
    expect(c).not.toContain('CAP_KILL');
    expect(c).not.toContain('CAP_MKNOD');
    expect(capabilities([], ['ALL'])).toEqual([]);
    expect(capabilities(['CHOWN'], ['ALL'])).toEqual(['CAP_CHOWN']);
    expect(() => capabilities(['NOPE'], [])).toThrow(/unknown capability "NOPE"/);
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

  it('privileged: every capability and device, nothing masked, /sys writable', () => {
    const s = gen({ cmd: ['x'], privileged: true }).spec as Any;
    expect(s.process.capabilities.bounding).toContain('CAP_SYS_ADMIN');
    expect(s.linux.resources.devices).toEqual([{ allow: true, access: 'rwm' }]);
    expect(s.linux.maskedPaths).toEqual([]);
    expect(s.mounts.find((m: Any) => m.destination === '/sys').options).not.toContain('ro');
  });

  it('limits ALL and privileged to what the host can grant', () => {
    const hostCaps = capsFromMask('00000000a80425fb');
    expect(hostCaps).toEqual(expect.arrayContaining([...DEFAULT_CAPS]));
    expect(hostCaps).toHaveLength(DEFAULT_CAPS.length);
    expect(capabilities(['ALL'], [], ['CAP_CHOWN', 'CAP_KILL'])).toEqual(['CAP_CHOWN', 'CAP_KILL']);
    expect(() => capabilities(['SYS_RESOURCE'], [], ['CAP_CHOWN'])).toThrow(
      /capability "CAP_SYS_RESOURCE" is not available on this host/,
    );
    const s = generateSpec(
      {
        id,
        namespace: 'n',
        request: { image: 'x', cmd: ['x'], privileged: true },
        image: {},
        passwd,
        group,
        files,
        hostCaps: ['CAP_CHOWN'],
      },
      'h',
    ).spec as Any;
    expect(s.process.capabilities.bounding).toEqual(['CAP_CHOWN']);
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

  it('sets TERM for a terminal and refuses a relative working directory', () => {
    expect((gen({ cmd: ['x'], tty: true }).spec as Any).process.env).toContain('TERM=xterm');
    expect(() => gen({ cmd: ['x'], workdir: 'rel' })).toThrow(/must be an absolute path/);
  });
});
