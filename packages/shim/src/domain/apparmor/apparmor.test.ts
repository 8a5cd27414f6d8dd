import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APPARMOR_DEFAULT_PROFILE, type AppArmorRequest, BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APPARMOR_PARSER_PATHS, NodeAppArmor, type NodeAppArmorOptions, profileNames } from './node.js';
import { defaultProfileText, notStartingWith, otherThan } from './profile.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-apparmor-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What a call ended with: the profile, or the error's code and message. */
async function outcome(p: Promise<string | undefined>): Promise<string | { code: string; message: string }> {
  try {
    return (await p) ?? 'none';
  } catch (err) {
    if (!(err instanceof BerthError)) throw err;
    return { code: err.code, message: err.message };
  }
}

/**
 * A fake apparmor_parser: records its arguments in `calls`, and adds the profile named in the
 * file it is given to `profiles` (the kernel's list), as a load does. `fail` makes it refuse.
 */
async function fakeParser(name: string, opts: { fail?: boolean } = {}) {
  const root = join(dir, name);
  const p = {
    parser: join(root, 'apparmor_parser'),
    calls: join(root, 'calls'),
    profiles: join(root, 'profiles'),
    state: join(root, 'state'),
  };
  await mkdir(root, { recursive: true });
  await writeFile(p.profiles, 'other-profile (enforce)\n/usr/bin/man (complain)\n');
  const body = opts.fail
    ? `echo "profile has a syntax error" >&2\nexit 1\n`
    : `name=$(sed -n 's/^profile \\([^ ]*\\) .*/\\1/p' "$2")\necho "$name (enforce)" >> '${p.profiles}'\n`;
  await writeFile(p.parser, `#!/bin/sh\necho "$@" >> '${p.calls}'\n${body}`);
  await chmod(p.parser, 0o755);
  const calls = async () => (await readFile(p.calls, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  const node = (o: Partial<NodeAppArmorOptions> = {}) =>
    new NodeAppArmor({
      dir: p.state,
      node: 'n1',
      enabled: () => true,
      parser: p.parser,
      profilesFile: p.profiles,
      ...o,
    });
  return { ...p, calls, node };
}

describe('the node decides: kernel with or without AppArmor x what is asked', () => {
  const requests: Record<string, AppArmorRequest> = {
    default: { mode: 'default' },
    unconfined: { mode: 'unconfined' },
    'localhost loaded': { mode: 'localhost', name: 'other-profile' },
    'localhost not loaded': { mode: 'localhost', name: 'k8s-deny-write' },
    'localhost berth-default': { mode: 'localhost', name: APPARMOR_DEFAULT_PROFILE },
  };
  const precondition = (text: string) => ({
    code: Code.FAILED_PRECONDITION,
    message: expect.stringMatching(text),
  });
  const table: [boolean, keyof typeof requests, unknown][] = [
    [false, 'default', 'none'],
    [false, 'unconfined', 'none'],
    [
      false,
      'localhost loaded',
      precondition('"other-profile" was asked for, but the kernel of node "n1" has no AppArmor'),
    ],
    [false, 'localhost not loaded', precondition('"k8s-deny-write" was asked for.*has no AppArmor')],
    [false, 'localhost berth-default', precondition('"berth-default" was asked for.*has no AppArmor')],
    [true, 'default', APPARMOR_DEFAULT_PROFILE],
    [true, 'unconfined', 'none'],
    [true, 'localhost loaded', 'other-profile'],
    [true, 'localhost not loaded', precondition('"k8s-deny-write" is not loaded on node "n1"')],
    [true, 'localhost berth-default', APPARMOR_DEFAULT_PROFILE],
  ];
  it.each(table)('kernel has AppArmor: %s, asked: %s -> %j', async (kernel, asked, expected) => {
    const f = await fakeParser(`table-${kernel}-${asked.replace(/ /g, '-')}`);
    const aa = f.node({ enabled: () => kernel });
    expect(await outcome(aa.resolve(requests[asked] as AppArmorRequest))).toEqual(expected);
    // The parser runs only for berth's own profile, only where the kernel has AppArmor.
    const loads = kernel && expected === APPARMOR_DEFAULT_PROFILE ? 1 : 0;
    expect(await f.calls()).toHaveLength(loads);
  });

  it('sets process.apparmorProfile, or removes one the spec had, for none', async () => {
    const f = await fakeParser('apply');
    const aa = f.node();
    const spec: Record<string, unknown> = { process: { args: ['sh'] } };
    await aa.apply(spec, { mode: 'default' });
    expect(spec.process).toEqual({ args: ['sh'], apparmorProfile: APPARMOR_DEFAULT_PROFILE });
    await aa.apply(spec, { mode: 'unconfined' });
    expect(spec.process).toEqual({ args: ['sh'] });
    await aa.apply(spec, { mode: 'localhost', name: 'other-profile' });
    expect(spec.process).toEqual({ args: ['sh'], apparmorProfile: 'other-profile' });
    const off = f.node({ enabled: () => false });
    await off.apply(spec, { mode: 'default' });
    expect(spec.process).toEqual({ args: ['sh'] });
  });

  it('asks the kernel once whether it has AppArmor', async () => {
    const f = await fakeParser('asked-once');
    let asked = 0;
    const aa = f.node({
      enabled: () => {
        asked++;
        return false;
      },
    });
    for (let i = 0; i < 3; i++) await aa.resolve({ mode: 'default' });
    expect(asked).toBe(1);
  });
});

describe("loading berth's default profile", () => {
  it('loads it once per process with apparmor_parser -Kr, from a file under its state directory', async () => {
    const f = await fakeParser('once');
    const aa = f.node();
    // Creates at the same moment share one load.
    await Promise.all([1, 2, 3, 4].map(() => aa.resolve({ mode: 'default' })));
    await aa.resolve({ mode: 'default' });
    const file = join(f.state, APPARMOR_DEFAULT_PROFILE);
    expect(await f.calls()).toEqual([`-Kr ${file}`]);
    expect(await readFile(file, 'utf8')).toBe(defaultProfileText(APPARMOR_DEFAULT_PROFILE));
    expect((await stat(file)).mode & 0o777).toBe(0o644);
    // Written whole under a temporary name, then renamed: nothing else is left in the directory.
    expect(await readdir(f.state)).toEqual([APPARMOR_DEFAULT_PROFILE]);
  });

  it('loads it again in a new process, even when the kernel lists it (a newer berth replaces it)', async () => {
    const f = await fakeParser('restart');
    await f.node().resolve({ mode: 'default' });
    await f.node().resolve({ mode: 'default' });
    expect(await f.calls()).toHaveLength(2);
  });

  it('loads it again when the kernel no longer lists it (apparmor_parser -R, a reload of the service)', async () => {
    const f = await fakeParser('gone');
    const aa = f.node();
    await aa.resolve({ mode: 'default' });
    await writeFile(f.profiles, 'other-profile (enforce)\n');
    expect(await aa.resolve({ mode: 'default' })).toBe(APPARMOR_DEFAULT_PROFILE);
    expect(await aa.resolve({ mode: 'default' })).toBe(APPARMOR_DEFAULT_PROFILE);
    expect(await f.calls()).toHaveLength(2);
  });

  it('is FAILED_PRECONDITION naming the package when apparmor_parser is missing', async () => {
    const f = await fakeParser('missing');
    const aa = f.node({ parser: join(f.state, 'no-such-parser') });
    const r = await outcome(aa.resolve({ mode: 'default' }));
    expect(r).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(
        /apparmor_parser, which loads it, is not there .*install the package "apparmor"/,
      ),
    });
    // Unconfined and loaded named profiles need no parser.
    expect(await aa.resolve({ mode: 'unconfined' })).toBeUndefined();
    expect(await aa.resolve({ mode: 'localhost', name: 'other-profile' })).toBe('other-profile');
  });

  it("is FAILED_PRECONDITION with the parser's own words when it refuses, and tries again next time", async () => {
    const f = await fakeParser('refuses', { fail: true });
    const aa = f.node();
    expect(await outcome(aa.resolve({ mode: 'default' }))).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(
        /loading AppArmor profile "berth-default" on node "n1" with .* failed: profile has a syntax error/,
      ),
    });
    await outcome(aa.resolve({ mode: 'default' }));
    expect(await f.calls()).toHaveLength(2);
  });

  it('is INTERNAL when the parser succeeded but the kernel does not list the profile', async () => {
    const f = await fakeParser('unlisted');
    await writeFile(f.parser, '#!/bin/sh\nexit 0\n');
    const r = await outcome(f.node().resolve({ mode: 'default' }));
    expect(r).toEqual({ code: Code.INTERNAL, message: expect.stringMatching(/does not list it/) });
  });

  it('is FAILED_PRECONDITION when the kernel list cannot be read', async () => {
    const f = await fakeParser('no-securityfs');
    const aa = f.node({ profilesFile: join(f.state, 'absent') });
    const r = await outcome(aa.resolve({ mode: 'localhost', name: 'p' }));
    expect(r).toEqual({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(/is securityfs mounted/),
    });
  });
});

describe('the kernel list of profiles', () => {
  it('reads names, with their modes and with spaces or slashes', () => {
    const names = profileNames(
      'berth-default (enforce)\n/usr/sbin/cupsd//third_party (complain)\nodd name (kill)\n\n',
    );
    expect([...names]).toEqual(['berth-default', '/usr/sbin/cupsd//third_party', 'odd name']);
  });
});

describe("berth's default profile", () => {
  /** Whether a glob alternation (of notStartingWith / otherThan) matches `s`, as AppArmor would. */
  const matches = (alts: string[], s: string) =>
    alts.some((a) => {
      const re = a
        .replace(/\[\^(.)\]/g, '[^$1/]')
        .replace(/\?/g, '[^/]')
        .replace(/\*/g, '[^/]*');
      return new RegExp(`^${re}$`).test(s);
    });

  it('spells "any name but X" exactly', () => {
    for (const s of ['k', 'ke', 'kern', 'kerne', 'kernel2', 'kernels', 'vm', 'net', 'fs', 'x']) {
      expect(matches(otherThan('kernel'), s), s).toBe(true);
    }
    expect(matches(otherThan('kernel'), 'kernel')).toBe(false);
    for (const s of ['sem', 'msgmax', 's', 'sh', 'shx', 'core_pattern', 'modprobe']) {
      expect(matches(notStartingWith('shm'), s), s).toBe(true);
    }
    for (const s of ['shm', 'shmmax', 'shm_rmid_forced'])
      expect(matches(notStartingWith('shm'), s), s).toBe(false);
  });

  it('denies what containerd and Docker deny, and allows the rest', () => {
    const text = defaultProfileText('berth-default');
    expect(text).toMatch(/^profile berth-default flags=\(attach_disconnected,mediate_deleted\) \{$/m);
    for (const rule of [
      'file,',
      'network,',
      'capability,',
      'deny mount,',
      'deny /proc/sysrq-trigger rwklx,',
    ]) {
      expect(text).toContain(`  ${rule}\n`);
    }
    expect(text).toContain('  signal (send,receive) peer=berth-default,\n');
    expect(text).toContain('  ptrace (trace,read,tracedby,readby) peer=berth-default,\n');
    expect(text).toContain('  deny /sys/kernel/security/** rwklx,\n');
    expect(() => defaultProfileText('a b')).toThrow(BerthError);
  });

  // The real parser compiles the text without loading it (-Q: this machine's kernel may have
  // no AppArmor): what a node with AppArmor would load. scripts/setup.sh installs it.
  const parser = APPARMOR_PARSER_PATHS.find((p) => existsSync(p));
  it('compiles with apparmor_parser (the package "apparmor")', async () => {
    expect(parser, 'apparmor_parser (install the package "apparmor": scripts/setup.sh)').toBeDefined();
    const file = join(dir, 'compile', APPARMOR_DEFAULT_PROFILE);
    await mkdir(join(dir, 'compile'), { recursive: true });
    await writeFile(file, defaultProfileText(APPARMOR_DEFAULT_PROFILE));
    const out = join(dir, 'compile', 'binary');
    execFileSync(parser as string, ['-Q', '-K', '-o', out, file], { stdio: ['ignore', 'ignore', 'pipe'] });
    expect((await stat(out)).size).toBeGreaterThan(0);
    // A broken rule is refused, so the check above means something.
    await writeFile(
      file,
      defaultProfileText(APPARMOR_DEFAULT_PROFILE).replace('deny mount,', 'deny /proc/[^s*/** w,'),
    );
    expect(() => execFileSync(parser as string, ['-Q', '-K', '-o', out, file], { stdio: 'pipe' })).toThrow();
  });
});
