import { CreateContainerRequest } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { apparmorOf, capabilitiesOf, hostDevicesOf, provisionalUser, seccompOf } from './node-facts.js';

describe('apparmorOf', () => {
  it('gives every container the default profile unless it asks otherwise', () => {
    expect(apparmorOf({ image: 'x' })).toEqual({ mode: 'default' });
    expect(apparmorOf({ image: 'x', apparmor: { mode: 'unconfined' } })).toEqual({ mode: 'unconfined' });
    expect(apparmorOf({ image: 'x', apparmor: { mode: 'localhost', name: 'p' } })).toEqual({
      mode: 'localhost',
      name: 'p',
    });
  });

  it('gives a privileged container no default profile, but the one it names (as Docker)', () => {
    expect(apparmorOf({ image: 'x', privileged: true })).toEqual({ mode: 'unconfined' });
    expect(apparmorOf({ image: 'x', privileged: true, apparmor: { mode: 'default' } })).toEqual({
      mode: 'unconfined',
    });
    expect(apparmorOf({ image: 'x', privileged: true, apparmor: { mode: 'localhost', name: 'p' } })).toEqual({
      mode: 'localhost',
      name: 'p',
    });
  });

  it('is validated by the create request: names without whitespace, known modes', () => {
    const valid = (apparmor: unknown) => CreateContainerRequest.safeParse({ image: 'x', apparmor }).success;
    expect(valid({ mode: 'localhost', name: '' })).toBe(false);
    expect(valid({ mode: 'localhost', name: 'a b' })).toBe(false);
    expect(valid({ mode: 'localhost', name: 'a\nb' })).toBe(false);
    expect(valid({ mode: 'complain' })).toBe(false);
    expect(valid({ mode: 'localhost', name: 'k8s-apparmor-example-deny-write' })).toBe(true);
  });
});

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

describe('capabilitiesOf', () => {
  it("asks the node for its default set with the container's changes, or all when privileged", () => {
    expect(capabilitiesOf({ image: 'x' })).toEqual({ mode: 'default', add: [], drop: [] });
    expect(capabilitiesOf({ image: 'x', capAdd: ['NET_ADMIN'], capDrop: ['ALL'] })).toEqual({
      mode: 'default',
      add: ['NET_ADMIN'],
      drop: ['ALL'],
    });
    expect(capabilitiesOf({ image: 'x', privileged: true, capDrop: ['KILL'] })).toEqual({ mode: 'all' });
  });
});

describe('provisionalUser', () => {
  it('keeps the numeric ids and requested groups; names are left to the node', () => {
    expect(provisionalUser('1000:2000', [3000, 3000])).toEqual({
      uid: 1000,
      gid: 2000,
      additionalGids: [3000],
    });
    expect(provisionalUser('www')).toEqual({ uid: 0, gid: 0 });
    expect(provisionalUser('33:staff')).toEqual({ uid: 33, gid: 0 });
    expect(provisionalUser('')).toEqual({ uid: 0, gid: 0 });
  });
});

describe('hostDevicesOf', () => {
  it("has a privileged container's node add its /dev devices, and no other's", () => {
    expect(hostDevicesOf({ image: 'x', privileged: true })).toBe(true);
    expect(hostDevicesOf({ image: 'x' })).toBe(false);
    expect(hostDevicesOf({ image: 'x', privileged: false, capAdd: ['SYS_ADMIN'] })).toBe(false);
  });
});
