import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { afterAll, describe, expect, it } from 'vitest';
import { toCreateRequest } from './options.js';
import { parseSecurityOpts } from './security-opts.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-secopt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('--security-opt', () => {
  it('reads no-new-privileges with or without a value', () => {
    expect(parseSecurityOpts(['no-new-privileges'])).toEqual({ noNewPrivileges: true });
    expect(parseSecurityOpts(['no-new-privileges=true'])).toEqual({ noNewPrivileges: true });
    expect(parseSecurityOpts(['no-new-privileges:false'])).toEqual({ noNewPrivileges: false });
    expect(() => parseSecurityOpts(['no-new-privileges=yes'])).toThrow(/expected true or false/);
  });

  it('reads seccomp=unconfined, builtin, and a profile file whose content it sends', () => {
    expect(parseSecurityOpts(['seccomp=unconfined'])).toEqual({ seccomp: { mode: 'unconfined' } });
    expect(parseSecurityOpts(['seccomp:unconfined'])).toEqual({ seccomp: { mode: 'unconfined' } });
    expect(parseSecurityOpts(['seccomp=builtin'])).toEqual({ seccomp: { mode: 'default' } });
    const p = file(
      'deny.json',
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      }),
    );
    const req = toCreateRequest({ values: { 'security-opt': [`seccomp=${p}`] }, positionals: ['img'] }, 'n');
    expect(req.seccomp).toEqual({
      mode: 'profile',
      source: p,
      profile: {
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      },
    });
  });

  it('names the file and the problem of a bad profile', () => {
    const cases: [string, string, RegExp][] = [
      ['json.json', '{"defaultAction":', /seccomp profile ".*json\.json" is not valid JSON/],
      ['act.json', '{"defaultAction":"SCMP_ACT_PERHAPS"}', /".*act\.json": defaultAction: Invalid option/],
      [
        'arch.json',
        '{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}',
        /".*arch\.json": architectures\[0\]/,
      ],
    ];
    for (const [name, text, re] of cases) {
      const p = file(name, text);
      expect(() => parseSecurityOpts([`seccomp=${p}`])).toThrow(re);
      expect(() => parseSecurityOpts([`seccomp=${p}`])).toThrow(
        expect.objectContaining({ code: Code.INVALID_ARGUMENT }),
      );
    }
    expect(() => parseSecurityOpts([`seccomp=${join(dir, 'missing.json')}`])).toThrow(
      /cannot read seccomp profile ".*missing\.json"/,
    );
    const notify = file('n.json', '{"defaultAction":"SCMP_ACT_NOTIFY"}');
    expect(() => parseSecurityOpts([`seccomp=${notify}`])).toThrow(
      expect.objectContaining({ code: Code.UNIMPLEMENTED }),
    );
  });

  it('reads apparmor=<profile>|unconfined (a profile loaded on the node, by name)', () => {
    expect(parseSecurityOpts(['apparmor=unconfined'])).toEqual({ apparmor: { mode: 'unconfined' } });
    expect(parseSecurityOpts(['apparmor=k8s-deny-write'])).toEqual({
      apparmor: { mode: 'localhost', name: 'k8s-deny-write' },
    });
    expect(parseSecurityOpts(['apparmor:berth-default'])).toEqual({
      apparmor: { mode: 'localhost', name: 'berth-default' },
    });
    expect(() => parseSecurityOpts(['apparmor='])).toThrow(/apparmor needs a profile name or unconfined/);
    // Nothing asked: the task-service gives the default profile (none when privileged).
    expect(parseSecurityOpts([])).toEqual({});
  });

  it('refuses options berth does not support', () => {
    expect(() => parseSecurityOpts(['label=disable'])).toThrow(/unsupported --security-opt/);
    expect(() => parseSecurityOpts(['seccomp='])).toThrow(/needs a profile or unconfined/);
  });
});
