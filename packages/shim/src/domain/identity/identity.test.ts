import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyCapabilities,
  applyUser,
  capsFromMask,
  DEFAULT_CAPS,
  nodeCapabilities,
  readRootfsFile,
  resolveCapabilities,
} from './index.js';

let dir: string;
/** A rootfs with users, and the node's own files beside it that a link must never reach. */
let rootfs: string;
let host: string;

const passwd =
  'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nbad line\nnobody:x:65534:65534::/nonexistent:/bin/false\n';
const group = 'root:x:0:\nwww:x:33:\nstaff:x:50:www,nobody\naudio:x:29:www\n';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-identity-'));
  rootfs = join(dir, 'rootfs');
  host = join(dir, 'host');
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await mkdir(join(host, 'etc'), { recursive: true });
  await writeFile(join(rootfs, 'etc', 'passwd'), passwd);
  await writeFile(join(rootfs, 'etc', 'group'), group);
  await writeFile(join(host, 'etc', 'passwd'), 'evil:x:4242:4242::/:/bin/sh\n');
  await writeFile(join(host, 'etc', 'group'), 'evil:x:4242:\n');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A fresh rootfs under the test dir, built by `build`. */
async function makeRootfs(name: string, build: (r: string) => Promise<void>): Promise<string> {
  const r = join(dir, name);
  await mkdir(join(r, 'etc'), { recursive: true });
  await build(r);
  return r;
}

const user = async (spec: string, root = rootfs, given: Record<string, unknown> = {}) => {
  const proc: Record<string, unknown> = { env: ['PATH=/bin'], ...given };
  const u = applyUser(proc, spec, { rootfs: root, task: 'c1', home: true });
  return { u, proc };
};

describe('applyUser', () => {
  it('resolves a name to its ids, groups and home', async () => {
    const { u, proc } = await user('www');
    expect(u).toEqual({ uid: 33, gid: 33, additionalGids: [33, 50, 29] });
    expect(proc.user).toEqual(u);
    expect(proc.env).toEqual(['PATH=/bin', 'HOME=/var/www']);
  });

  it('takes numeric ids, with or without a passwd entry', async () => {
    expect((await user('1000')).u).toEqual({ uid: 1000, gid: 0, additionalGids: [0] });
    expect((await user('33')).u).toEqual({ uid: 33, gid: 33, additionalGids: [33, 50, 29] });
    expect((await user('1000:2000')).u).toEqual({ uid: 1000, gid: 2000, additionalGids: [2000] });
    expect((await user('')).proc.env).toContain('HOME=/root');
    expect((await user('1000')).proc.env).toContain('HOME=/');
  });

  it('resolves a group by name or id and puts it first among the supplementary ones', async () => {
    expect((await user('www:staff')).u).toEqual({ uid: 33, gid: 50, additionalGids: [50, 29] });
    expect((await user('www:7')).u).toEqual({ uid: 33, gid: 7, additionalGids: [7, 50, 29] });
    expect((await user('nobody')).u).toEqual({ uid: 65534, gid: 65534, additionalGids: [65534, 50] });
  });

  it("adds the spec's supplementary groups (CRI's) to the user's, once each, and keeps HOME", async () => {
    const { u, proc } = await user('www', rootfs, {
      user: { uid: 0, gid: 0, additionalGids: [29, 4000] },
      env: ['HOME=/mine'],
    });
    expect(u).toEqual({ uid: 33, gid: 33, additionalGids: [33, 50, 29, 4000] });
    expect(proc.env).toEqual(['HOME=/mine']);
  });

  it('refuses unknown names with INVALID_ARGUMENT naming the user and the container', async () => {
    const err = await user('ghost').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as Error).message).toBe(
      'user "ghost" not found in /etc/passwd of the image of container "c1"',
    );
    await expect(user('www:nogroup')).rejects.toThrow(/group "nogroup" not found/);
    await expect(user('a:b:c')).rejects.toThrow(/invalid user "a:b:c"/);
  });

  it('works without /etc/passwd for numeric ids and refuses names', async () => {
    const bare = await makeRootfs('bare', async () => undefined);
    expect((await user('1000:1000', bare)).u).toEqual({ uid: 1000, gid: 1000, additionalGids: [1000] });
    expect((await user('', bare)).u).toEqual({ uid: 0, gid: 0, additionalGids: [0] });
    await expect(user('www', bare)).rejects.toThrow(/user "www" not found/);
  });

  it('never follows a symlinked /etc/passwd out of the rootfs', async () => {
    // An absolute link resolves inside the rootfs (here: to nothing), a relative one stops at its root.
    const abs = await makeRootfs('abs', async (r) => {
      await symlink(join(host, 'etc', 'passwd'), join(r, 'etc', 'passwd'));
      await symlink(join(host, 'etc', 'group'), join(r, 'etc', 'group'));
    });
    await expect(user('evil', abs)).rejects.toThrow(/user "evil" not found/);
    const rel = await makeRootfs('rel', async (r) => {
      await symlink('../../../../../../../host/etc/passwd', join(r, 'etc', 'passwd'));
    });
    await expect(user('evil', rel)).rejects.toThrow(/user "evil" not found/);
    // A linked /etc directory is followed, but within the rootfs.
    const dirLink = await makeRootfs('dirlink', async (r) => {
      await rm(join(r, 'etc'), { recursive: true });
      await mkdir(join(r, 'real-etc'));
      await writeFile(join(r, 'real-etc', 'passwd'), 'inside:x:7:8::/in:/bin/sh\n');
      await symlink('/real-etc', join(r, 'etc'));
    });
    expect((await user('inside', dirLink)).u).toEqual({ uid: 7, gid: 8, additionalGids: [8] });
  });
});

describe('readRootfsFile', () => {
  it('reads within the root, resolving .. and absolute links against it', async () => {
    const r = await makeRootfs('read', async (x) => {
      await writeFile(join(x, 'etc', 'f'), 'inside\n');
      await symlink('/etc/f', join(x, 'etc', 'abs'));
      await symlink('../../../etc/f', join(x, 'etc', 'rel'));
      await symlink('loop', join(x, 'etc', 'loop'));
    });
    expect(readRootfsFile(r, '/etc/f')).toBe('inside\n');
    expect(readRootfsFile(r, '/../../etc/./f')).toBe('inside\n');
    expect(readRootfsFile(r, '/etc/abs')).toBe('inside\n');
    expect(readRootfsFile(r, '/etc/rel')).toBe('inside\n');
    expect(readRootfsFile(r, '/etc/none')).toBeUndefined();
    expect(readRootfsFile(r, '/etc')).toBeUndefined();
    expect(readRootfsFile(r, '/etc/f/x')).toBeUndefined();
    expect(() => readRootfsFile(r, '/etc/loop')).toThrow(/too many levels of symbolic links/);
    expect(() => readRootfsFile(r, '/etc/f', 3)).toThrow(/larger than 3 bytes/);
  });

  it('reads no more than its limit from a file whose size said less (one that grew since its stat)', async () => {
    // /proc/cpuinfo says size 0 and holds kilobytes: what a file a container grows between the
    // stat and the read looks like to the read. Bound over a file of the rootfs (tests run as root).
    const r = await makeRootfs('grown', (x) => writeFile(join(x, 'etc', 'grown'), ''));
    const at = join(r, 'etc', 'grown');
    execFileSync('mount', ['--bind', '/proc/cpuinfo', at]);
    try {
      expect(statSync(at).size).toBe(0);
      expect(readFileSync('/proc/cpuinfo').length).toBeGreaterThan(100);
      expect(() => readRootfsFile(r, '/etc/grown', 100)).toThrow(/larger than 100 bytes/);
      expect(readRootfsFile(r, '/etc/grown')).toBe(readFileSync('/proc/cpuinfo', 'utf8'));
    } finally {
      execFileSync('umount', [at]);
    }
  });
});

describe('capabilities', () => {
  const node = capsFromMask('000001ffffffffff');

  it("gives the default set, as far as the node's bounding set has it", () => {
    expect(resolveCapabilities({ mode: 'default', add: [], drop: [] }, node, 'n1')).toEqual([
      ...DEFAULT_CAPS,
    ]);
    const noChroot = node.filter((c) => c !== 'CAP_SYS_CHROOT');
    expect(resolveCapabilities({ mode: 'default', add: [], drop: [] }, noChroot, 'n1')).toEqual(
      DEFAULT_CAPS.filter((c) => c !== 'CAP_SYS_CHROOT'),
    );
    expect(capsFromMask('00000000a80425fb')).toEqual(expect.arrayContaining([...DEFAULT_CAPS]));
    expect(capsFromMask('00000000a80425fb')).toHaveLength(DEFAULT_CAPS.length);
  });

  it('adds and drops by either spelling; ALL on either side; drops win', () => {
    const c = resolveCapabilities(
      { mode: 'default', add: ['net_admin'], drop: ['CAP_KILL', 'MKNOD'] },
      node,
      'n1',
    );
    expect(c).toContain('CAP_NET_ADMIN');
    expect(c).not.toContain('CAP_KILL');
    expect(c).not.toContain('CAP_MKNOD');
    expect(resolveCapabilities({ mode: 'default', add: [], drop: ['ALL'] }, node, 'n1')).toEqual([]);
    expect(resolveCapabilities({ mode: 'default', add: ['CHOWN'], drop: ['ALL'] }, node, 'n1')).toEqual([
      'CAP_CHOWN',
    ]);
    expect(
      resolveCapabilities({ mode: 'default', add: ['ALL'], drop: [] }, ['CAP_CHOWN', 'CAP_KILL'], 'n1'),
    ).toEqual(['CAP_CHOWN', 'CAP_KILL']);
    expect(() => resolveCapabilities({ mode: 'default', add: ['NOPE'], drop: [] }, node, 'n1')).toThrow(
      /unknown capability "NOPE"/,
    );
  });

  it('refuses an addition the node cannot grant, naming it and the node', () => {
    expect(() =>
      resolveCapabilities({ mode: 'default', add: ['SYS_RESOURCE'], drop: [] }, ['CAP_CHOWN'], 'n1'),
    ).toThrow(/capability "CAP_SYS_RESOURCE" is not available on node "n1"/);
  });

  it("privileged (all) is the node's whole bounding set, read from this process", () => {
    expect(resolveCapabilities({ mode: 'all' }, ['CAP_CHOWN'], 'n1')).toEqual(['CAP_CHOWN']);
    const spec: Record<string, unknown> = { process: { args: ['x'] } };
    const caps = applyCapabilities(spec, { mode: 'all' }, 'n1');
    expect(caps).toEqual(nodeCapabilities());
    expect((spec.process as Record<string, unknown>).capabilities).toEqual({
      bounding: caps,
      effective: caps,
      permitted: caps,
    });
  });
});
