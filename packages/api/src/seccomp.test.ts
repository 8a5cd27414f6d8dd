import { describe, expect, it } from 'vitest';
import { Code } from './errors.js';
import { DockerSeccompProfile, SeccompRequest, seccompFromCri, seccompFromCriPath } from './seccomp.js';

describe('seccomp contracts', () => {
  it('maps CRI security profiles to seccomp requests', () => {
    expect(seccompFromCri(undefined)).toEqual({ mode: 'unconfined' });
    expect(seccompFromCri({ profileType: 'Unconfined' })).toEqual({ mode: 'unconfined' });
    expect(seccompFromCri({ profileType: 'RuntimeDefault' })).toEqual({ mode: 'default' });
    expect(
      seccompFromCri({ profileType: 'Localhost', localhostRef: '/var/lib/kubelet/seccomp/a.json' }),
    ).toEqual({
      mode: 'localhost',
      path: '/var/lib/kubelet/seccomp/a.json',
    });
    const invalid = expect.objectContaining({ code: Code.INVALID_ARGUMENT });
    expect(() => seccompFromCri({ profileType: 'Localhost', localhostRef: 'a.json' })).toThrow(invalid);
    expect(() => seccompFromCri({ profileType: 'Localhost' })).toThrow(invalid);
    expect(() => seccompFromCri({ profileType: 'Strict' })).toThrow(/unknown seccomp profile type "Strict"/);
  });

  it('maps the deprecated CRI profile paths', () => {
    expect(seccompFromCriPath('')).toEqual({ mode: 'unconfined' });
    expect(seccompFromCriPath('unconfined')).toEqual({ mode: 'unconfined' });
    expect(seccompFromCriPath('runtime/default')).toEqual({ mode: 'default' });
    expect(seccompFromCriPath('docker/default')).toEqual({ mode: 'default' });
    expect(seccompFromCriPath('localhost//p/a.json')).toEqual({ mode: 'localhost', path: '/p/a.json' });
    expect(() => seccompFromCriPath('localhost/rel.json')).toThrow(/must be an absolute path/);
    expect(() => seccompFromCriPath('default')).toThrow(/unknown seccomp profile path "default"/);
  });

  it('validates Docker-format profiles', () => {
    const ok = DockerSeccompProfile.safeParse({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 1,
      archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: null }],
      syscalls: [
        {
          names: ['clone'],
          action: 'SCMP_ACT_ALLOW',
          args: [{ index: 0, value: 1, op: 'SCMP_CMP_MASKED_EQ' }],
        },
      ],
    });
    expect(ok.success).toBe(true);
    const valid = (p: unknown) => DockerSeccompProfile.safeParse(p).success;
    expect(valid({})).toBe(false);
    expect(valid({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ action: 'SCMP_ACT_ALLOW' }] })).toBe(false);
    expect(
      valid({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ name: 'a', names: ['b'], action: 'SCMP_ACT_ALLOW' }],
      }),
    ).toBe(false);
    expect(
      valid({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [
          { names: ['a'], action: 'SCMP_ACT_ALLOW', args: [{ index: 6, value: 0, op: 'SCMP_CMP_EQ' }] },
        ],
      }),
    ).toBe(false);
    expect(
      valid({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['a'], action: 'SCMP_ACT_ALLOW', includes: { minKernel: '4' } }],
      }),
    ).toBe(false);
    expect(SeccompRequest.safeParse({ mode: 'localhost', path: 'x' }).success).toBe(false);
  });
});
