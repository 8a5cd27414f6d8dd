import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LayeredRootfs } from './layers.js';

let root: string;
let fs: LayeredRootfs;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-layers-'));
  const lower = join(root, 'lower');
  const upper = join(root, 'upper');
  await mkdir(join(lower, 'usr/bin'), { recursive: true });
  await mkdir(join(lower, 'etc'), { recursive: true });
  await writeFile(join(lower, 'usr/bin/busybox'), 'bin');
  await chmod(join(lower, 'usr/bin/busybox'), 0o755);
  await symlink('usr/bin', join(lower, 'bin'));
  await symlink('busybox', join(lower, 'usr/bin/sh'));
  await writeFile(join(lower, 'usr/bin/data'), 'not executable');
  await writeFile(join(lower, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  await writeFile(join(lower, 'etc/gone'), 'x');
  await symlink('/../../../../etc/hostname', join(lower, 'etc/escape'));
  // A hostile lower layer: /secret is a symlink to the host's /etc, hidden by an upper directory.
  await symlink('/etc', join(lower, 'secret'));
  await mkdir(join(upper, 'secret'), { recursive: true });
  await mkdir(join(upper, 'etc'), { recursive: true });
  await writeFile(join(upper, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\nu:x:1:1::/:/bin/sh\n');
  execFileSync('mknod', [join(upper, 'etc/gone'), 'c', '0', '0']);
  fs = LayeredRootfs.fromMounts([
    {
      type: 'overlay',
      source: 'overlay',
      options: [`upperdir=${upper}`, `lowerdir=${lower}`, `workdir=${join(root, 'work')}`],
    },
  ]);
});
afterAll(async () => rm(root, { recursive: true, force: true }));

describe('LayeredRootfs', () => {
  it('reads the topmost version of a file', async () => {
    expect(await fs.readFile('/etc/passwd')).toContain('u:x:1:1');
  });
  it('hides whiteouts', async () => {
    expect(await fs.readFile('/etc/gone')).toBeUndefined();
  });
  it('follows symlinks inside the rootfs, never to the host', async () => {
    expect(await fs.hasCommand('sh', '/bin')).toBe(true);
    expect(await fs.hasCommand('/bin/sh', '')).toBe(true);
    expect(await fs.hasCommand('data', '/usr/bin')).toBe(false);
    expect(await fs.hasCommand('nope', '/usr/bin:/bin')).toBe(false);
    expect(await fs.readFile('/etc/escape')).toBeUndefined();
    // Through the symlinked directory of a lower layer the host's /etc/passwd would be reached.
    expect(await fs.readFile('/secret/passwd')).toBeUndefined();
  });
});
