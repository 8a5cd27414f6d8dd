import { CreateContainerRequest } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { seccompOf } from './seccomp.js';

describe('seccompOf', () => {
  it('gives every container the default profile unless it asks otherwise', () => {
    expect(seccompOf({ image: 'x' })).toEqual({ mode: 'default' });
    expect(seccompOf({ image: 'x', seccomp: { mode: 'unconfined' } })).toEqual({ mode: 'unconfined' });
    const profile = { defaultAction: 'SCMP_ACT_ALLOW' as const };
    expect(seccompOf({ image: 'x', seccomp: { mode: 'profile', profile } })).toEqual({
      mode: 'profile',
      profile,
    });
  });

  it('gives a privileged container none, whatever it asked for', () => {
    expect(seccompOf({ image: 'x', privileged: true })).toEqual({ mode: 'unconfined' });
    expect(seccompOf({ image: 'x', privileged: true, seccomp: { mode: 'default' } })).toEqual({
      mode: 'unconfined',
    });
  });

  it('is validated by the create request: unknown actions, relative localhost paths', () => {
    const valid = (seccomp: unknown) => CreateContainerRequest.safeParse({ image: 'x', seccomp }).success;
    expect(valid({ mode: 'profile', profile: { defaultAction: 'SCMP_ACT_NOPE' } })).toBe(false);
    expect(valid({ mode: 'localhost', path: 'p.json' })).toBe(false);
    expect(valid({ mode: 'strict' })).toBe(false);
    expect(valid({ mode: 'localhost', path: '/var/lib/kubelet/seccomp/p.json' })).toBe(true);
  });
});
