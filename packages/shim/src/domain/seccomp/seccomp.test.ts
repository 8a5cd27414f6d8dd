import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code, type DockerSeccompProfile } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kernelAtLeast, type OciSeccomp, resolveProfile, type SeccompContext } from './convert.js';
import { CLONE_NAMESPACE_FLAGS, DEFAULT_PROFILE } from './default-profile.js';
import {
  applySeccomp,
  criSeccompSection,
  loadSeccompProfile,
  parseSeccompProfile,
  seccompSection,
} from './resolve.js';

/** containerd's default capability set (the task-service's DEFAULT_CAPS). */
const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];
const amd64 = (caps: string[] = DEFAULT_CAPS, kernel = '6.1.0-18-amd64'): SeccompContext => ({
  caps,
  arch: 'amd64',
  kernel,
});
const def = (ctx: SeccompContext) => resolveProfile(DEFAULT_PROFILE, ctx, 'default');

/** Names a profile allows without any argument condition. */
function allowed(p: OciSeccomp): Set<string> {
  return new Set(
    (p.syscalls ?? []).filter((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args).flatMap((r) => r.names),
  );
}
const rulesFor = (p: OciSeccomp, name: string) => (p.syscalls ?? []).filter((r) => r.names.includes(name));

async function rejects(p: Promise<unknown>, code: string, text: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  expect((err as BerthError).code).toBe(code);
  expect((err as BerthError).message).toContain(text);
}

describe('the default profile', () => {
  it('refuses everything else with EPERM and allows the common syscalls', () => {
    const p = def(amd64());
    expect(p.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(p.defaultErrnoRet).toBe(1);
    const ok = allowed(p);
    for (const n of ['read', 'write', 'openat', 'mkdirat', 'execve', 'chroot', 'ptrace', 'arch_prctl']) {
      expect(ok.has(n), n).toBe(true);
    }
    for (const n of ['keyctl', 'add_key', 'request_key', 'unshare', 'mount', 'setns', 'bpf', 'reboot']) {
      expect(ok.has(n), n).toBe(false);
    }
    for (const n of ['kexec_load', 'init_module', 'open_by_handle_at', 'settimeofday', 'syslog']) {
      expect(rulesFor(p, n), n).toEqual([]);
    }
  });

  it('has moby/profiles/seccomp v0.2.3 size: 361 unconditional names, 33 rules', () => {
    expect(DEFAULT_PROFILE.syscalls?.[0]?.names).toHaveLength(361);
    expect(new Set(DEFAULT_PROFILE.syscalls?.[0]?.names).size).toBe(361);
    expect(DEFAULT_PROFILE.syscalls).toHaveLength(33);
  });

  it('lets clone make no namespace and answers clone3 with ENOSYS without CAP_SYS_ADMIN', () => {
    const p = def(amd64());
    expect(CLONE_NAMESPACE_FLAGS).toBe(0x7e020000);
    expect(rulesFor(p, 'clone')).toEqual([
      {
        names: ['clone'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ]);
    expect(rulesFor(p, 'clone3')).toEqual([{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
    const s390 = def({ ...amd64(), arch: 's390x' });
    expect(rulesFor(s390, 'clone')[0]?.args?.[0]?.index).toBe(1);
  });

  it('filters socket families (no AF_ALG, no AF_VSOCK) and personality values', () => {
    const p = def(amd64());
    expect(rulesFor(p, 'socket').map((r) => r.args)).toEqual([
      [{ index: 0, value: 38, op: 'SCMP_CMP_LT' }],
      [{ index: 0, value: 39, op: 'SCMP_CMP_EQ' }],
      [{ index: 0, value: 40, op: 'SCMP_CMP_GT' }],
    ]);
    expect(rulesFor(p, 'personality').map((r) => r.args?.[0]?.value)).toEqual([
      0, 8, 0x20000, 0x20008, 0xffffffff,
    ]);
  });

  it('adds the syscalls of CAP_SYS_ADMIN and drops the clone filter', () => {
    const p = def(amd64([...DEFAULT_CAPS, 'CAP_SYS_ADMIN']));
    const ok = allowed(p);
    for (const n of ['unshare', 'mount', 'umount2', 'setns', 'clone', 'clone3', 'sethostname', 'bpf']) {
      expect(ok.has(n), n).toBe(true);
    }
    expect(rulesFor(p, 'clone').every((r) => !r.args)).toBe(true);
    expect(rulesFor(p, 'clone3').every((r) => r.action === 'SCMP_ACT_ALLOW')).toBe(true);
    expect(ok.has('keyctl')).toBe(false);
  });

  it('adds the syscalls of each other capability', () => {
    const cases: [string, string[]][] = [
      ['CAP_SYS_PTRACE', ['kcmp', 'pidfd_getfd', 'process_madvise']],
      ['CAP_SYS_MODULE', ['init_module', 'finit_module', 'delete_module']],
      ['CAP_SYS_BOOT', ['reboot']],
      ['CAP_SYS_TIME', ['settimeofday', 'clock_settime']],
      ['CAP_SYS_NICE', ['mbind', 'set_mempolicy']],
      ['CAP_SYS_RAWIO', ['iopl', 'ioperm']],
      ['CAP_SYS_PACCT', ['acct']],
      ['CAP_SYSLOG', ['syslog']],
      ['CAP_SYS_TTY_CONFIG', ['vhangup']],
      ['CAP_DAC_READ_SEARCH', ['open_by_handle_at']],
      ['CAP_BPF', ['bpf']],
      ['CAP_PERFMON', ['perf_event_open']],
    ];
    for (const [cap, names] of cases) {
      const without = allowed(def(amd64()));
      const withCap = allowed(def(amd64([...DEFAULT_CAPS, cap])));
      for (const n of names) {
        expect(without.has(n), `${n} without ${cap}`).toBe(false);
        expect(withCap.has(n), `${n} with ${cap}`).toBe(true);
      }
    }
    expect(allowed(def(amd64(DEFAULT_CAPS.filter((c) => c !== 'CAP_SYS_CHROOT')))).has('chroot')).toBe(false);
  });

  it('allows ptrace to everyone only from kernel 4.8', () => {
    expect(allowed(def(amd64(DEFAULT_CAPS, '4.4.0-210-generic'))).has('ptrace')).toBe(false);
    expect(allowed(def(amd64(DEFAULT_CAPS, '4.8.0'))).has('ptrace')).toBe(true);
    expect(kernelAtLeast('5.10.0-28-amd64', '4.8')).toBe(true);
    expect(kernelAtLeast('4.19.0', '5.4')).toBe(false);
  });

  it('names the architectures of the node and its arch-only syscalls', () => {
    expect(def(amd64()).architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const arm = def({ ...amd64(), arch: 'arm64' });
    expect(arm.architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    expect(allowed(arm).has('set_tls')).toBe(true);
    expect(allowed(arm).has('arch_prctl')).toBe(false);
    expect(def({ ...amd64(), arch: 's390x' }).architectures).toEqual(['SCMP_ARCH_S390X', 'SCMP_ARCH_S390']);
    expect(def({ ...amd64(), arch: 'riscv64' }).architectures).toEqual(['SCMP_ARCH_RISCV64']);
  });
});

describe('Docker-format profiles', () => {
  const profile: DockerSeccompProfile = {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [
      { name: 'mkdir', action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['keyctl'], action: 'SCMP_ACT_ERRNO', excludes: { caps: ['CAP_SYS_ADMIN'] } },
      { names: ['reboot'], action: 'SCMP_ACT_KILL', includes: { caps: ['CAP_SYS_BOOT', 'CAP_KILL'] } },
      { names: ['ioperm'], action: 'SCMP_ACT_ERRNO', includes: { arches: ['arm64'] } },
      { names: ['iopl'], action: 'SCMP_ACT_ERRNO', excludes: { arches: ['amd64'] } },
      { names: ['pidfd_open'], action: 'SCMP_ACT_LOG', excludes: { minKernel: '5.3' } },
    ],
  };

  it('keeps a rule only when its excludes miss and all its includes match', () => {
    const p = resolveProfile(profile, amd64(), 'test');
    expect(p).toEqual({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64'],
      syscalls: [
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
        { names: ['keyctl'], action: 'SCMP_ACT_ERRNO' },
      ],
    });
    const admin = resolveProfile(profile, amd64(['CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_KILL'], '5.2.1'), 't');
    expect(admin.syscalls?.map((r) => r.names[0])).toEqual(['mkdir', 'reboot', 'pidfd_open']);
    const arm = resolveProfile(profile, { ...amd64(), arch: 'arm64' }, 't');
    expect(arm.syscalls?.map((r) => r.names[0])).toEqual(['mkdir', 'keyctl', 'ioperm', 'iopl']);
  });

  it('parses files and names the file and the problem', () => {
    expect(parseSeccompProfile(JSON.stringify(profile), '"/p.json"').syscalls?.length).toBe(6);
    const bad = (text: string, what: string) =>
      expect(() => parseSeccompProfile(text, '"/p.json"')).toThrow(`seccomp profile "/p.json"${what}`);
    bad('{"defaultAction": ', ' is not valid JSON');
    bad('{"defaultAction": "SCMP_ACT_MAYBE"}', ': defaultAction: Invalid option');
    bad('{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}', ': architectures[0]');
    bad(
      '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_NOPE"}]}',
      ': syscalls[0].action',
    );
    bad(
      '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86"}]}',
      ": profile: a profile names 'architectures' or 'archMap', not both",
    );
  });

  it('refuses notify actions: berth runs no seccomp agent', () => {
    const notify: DockerSeccompProfile = { ...profile, listenerPath: '/run/agent.sock' };
    expect(() => resolveProfile(notify, amd64(), '"/n.json"')).toThrow(
      expect.objectContaining({ code: Code.UNIMPLEMENTED }),
    );
  });
});

describe('profiles of the node and the CRI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-seccomp-'));
    await writeFile(
      join(dir, 'deny-mkdir.json'),
      JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] }),
    );
    await writeFile(join(dir, 'bad.json'), '{"defaultAction": "ALLOW"}');
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('reads a localhost profile, NOT_FOUND or INVALID_ARGUMENT naming the path', async () => {
    const ok = await loadSeccompProfile(join(dir, 'deny-mkdir.json'));
    expect(ok.defaultAction).toBe('SCMP_ACT_ALLOW');
    await rejects(loadSeccompProfile(join(dir, 'none.json')), Code.NOT_FOUND, `"${join(dir, 'none.json')}"`);
    await rejects(loadSeccompProfile(join(dir, 'bad.json')), Code.INVALID_ARGUMENT, 'defaultAction');
    await rejects(loadSeccompProfile(dir), Code.INVALID_ARGUMENT, 'is not a file');
    await rejects(loadSeccompProfile('p.json'), Code.INVALID_ARGUMENT, 'absolute path');
  });

  it('maps CRI profiles: RuntimeDefault, Unconfined (and unset), Localhost', async () => {
    const rd = await criSeccompSection({ profileType: 'RuntimeDefault' }, DEFAULT_CAPS);
    expect(rd?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(await criSeccompSection({ profileType: 'Unconfined' }, DEFAULT_CAPS)).toBeUndefined();
    expect(await criSeccompSection(undefined, DEFAULT_CAPS)).toBeUndefined();
    const lh = await criSeccompSection(
      { profileType: 'Localhost', localhostRef: join(dir, 'deny-mkdir.json') },
      DEFAULT_CAPS,
    );
    expect(lh).toEqual({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] });
    await rejects(
      criSeccompSection({ profileType: 'Localhost', localhostRef: 'rel.json' }, []),
      Code.INVALID_ARGUMENT,
      '"rel.json"',
    );
    await rejects(
      criSeccompSection({ profileType: 'Localhost', localhostRef: '/nonexistent/p.json' }, []),
      Code.NOT_FOUND,
      '"/nonexistent/p.json"',
    );
  });

  it('sets linux.seccomp for the spec bounding caps, and removes it when unconfined', async () => {
    const spec: Record<string, unknown> = {
      process: { capabilities: { bounding: ['CAP_SYS_ADMIN'] } },
      linux: { seccomp: { defaultAction: 'SCMP_ACT_KILL' } },
    };
    await applySeccomp(spec, { mode: 'default' });
    const sc = (spec.linux as { seccomp: OciSeccomp }).seccomp;
    expect(allowed(sc).has('unshare')).toBe(true);
    await applySeccomp(spec, { mode: 'unconfined' });
    expect(spec.linux).toEqual({});
    const profile: DockerSeccompProfile = { defaultAction: 'SCMP_ACT_LOG' };
    const p = await seccompSection({ mode: 'profile', profile, source: '/x.json' }, amd64());
    expect(p).toEqual({ defaultAction: 'SCMP_ACT_LOG', syscalls: [] });
    expect(await seccompSection({ mode: 'unconfined' }, amd64())).toBeUndefined();
  });
});
