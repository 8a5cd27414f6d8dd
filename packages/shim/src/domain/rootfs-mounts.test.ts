import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code, type Mount } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRootfsMounts } from './rootfs-mounts.js';

let root: string;
let snaps: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-rootfs-mounts-'));
  snaps = join(root, 'snapshots');
  for (const id of ['1', '2', '3']) {
    await mkdir(join(snaps, id, 'fs'), { recursive: true });
    await mkdir(join(snaps, id, 'work'), { recursive: true });
  }
  await mkdir(join(root, 'host-etc'));
  // A snapshot id that is a symlink to a host directory, and an fs that is one.
  await mkdir(join(root, 'elsewhere', 'fs'), { recursive: true });
  await symlink(join(root, 'elsewhere'), join(snaps, '7'));
  await mkdir(join(snaps, '8'));
  await symlink(join(root, 'host-etc'), join(snaps, '8', 'fs'));
  await mkdir(join(snaps, '9'));
  await writeFile(join(snaps, '9', 'fs'), '');
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function refusal(mounts: Mount[]): Promise<string> {
  try {
    await checkRootfsMounts(mounts, snaps, 'c1');
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
    return (err as BerthError).message;
  }
  throw new Error(`accepted ${JSON.stringify(mounts)}`);
}

const overlay = (...options: string[]): Mount[] => [{ type: 'overlay', source: 'overlay', options }];

describe('rootfs mounts a shim accepts', () => {
  it('accepts what the snapshot-service hands out: binds of fs, overlays of fs/work', async () => {
    const fs = (id: string) => join(snaps, id, 'fs');
    await checkRootfsMounts([{ type: 'bind', source: fs('1'), options: ['rw', 'rbind'] }], snaps, 'c1');
    await checkRootfsMounts([{ type: 'bind', source: fs('1'), options: ['ro', 'rbind'] }], snaps, 'c1');
    await checkRootfsMounts(
      overlay(
        'index=off',
        `workdir=${join(snaps, '3', 'work')}`,
        `upperdir=${fs('3')}`,
        `lowerdir=${fs('2')}:${fs('1')}`,
      ),
      snaps,
      'c1',
    );
    await checkRootfsMounts(overlay(`lowerdir=${fs('2')}:${fs('1')}`), snaps, 'c1');
  });

  it('refuses a bind of a host directory, by path, by .., or through a symlink', async () => {
    expect(await refusal([{ type: 'bind', source: '/etc', options: ['rbind', 'rw'] }])).toBe(
      `task "c1": rootfs[0].source "/etc" is not a snapshot's fs directory (${snaps}/<id>/fs); the shim mounts only snapshots under ${snaps}`,
    );
    expect(await refusal([{ type: 'bind', source: join(root, 'host-etc'), options: ['rbind'] }])).toContain(
      'rootfs[0].source',
    );
    const dotdot = `${snaps}/1/fs/../../../host-etc`;
    expect(await refusal([{ type: 'bind', source: dotdot, options: ['rbind'] }])).toContain(
      'is not a snapshot',
    );
    expect(await refusal([{ type: 'bind', source: join(snaps, '7', 'fs'), options: ['rbind'] }])).toContain(
      `${join(snaps, '7')} is not a directory`,
    );
    expect(await refusal([{ type: 'bind', source: join(snaps, '8', 'fs'), options: ['rbind'] }])).toContain(
      'not a directory (a symlink or a file)',
    );
    expect(await refusal([{ type: 'bind', source: join(snaps, '9', 'fs'), options: ['rbind'] }])).toContain(
      'not a directory',
    );
    expect(await refusal([{ type: 'bind', source: join(snaps, '4', 'fs'), options: ['rbind'] }])).toContain(
      'is missing',
    );
    expect(await refusal([{ type: 'bind', source: join(snaps, '1', 'work'), options: ['rbind'] }])).toContain(
      "is not a snapshot's fs directory",
    );
    expect(await refusal([{ type: 'bind', source: snaps, options: ['rbind'] }])).toContain(
      'rootfs[0].source',
    );
  });

  it('refuses overlays whose directories are not snapshots', async () => {
    const fs1 = join(snaps, '1', 'fs');
    expect(await refusal(overlay(`lowerdir=/etc`))).toContain('rootfs[0] lowerdir[0] "/etc"');
    expect(await refusal(overlay(`lowerdir=${fs1}:/etc`))).toContain('lowerdir[1] "/etc"');
    expect(
      await refusal(overlay(`lowerdir=${fs1}`, 'upperdir=/etc', `workdir=${join(snaps, '3', 'work')}`)),
    ).toContain('upperdir "/etc"');
    expect(
      await refusal(overlay(`lowerdir=${fs1}`, `upperdir=${join(snaps, '3', 'fs')}`, 'workdir=/tmp/w')),
    ).toContain('workdir "/tmp/w"');
    expect(
      await refusal(
        overlay(
          `lowerdir=${fs1}`,
          `upperdir=${join(snaps, '3', 'fs')}`,
          `workdir=${join(snaps, '2', 'work')}`,
        ),
      ),
    ).toContain("is not the upperdir's snapshot's work directory");
    expect(await refusal(overlay(`lowerdir=${fs1}`, `upperdir=${join(snaps, '3', 'fs')}`))).toContain(
      'both upperdir and workdir',
    );
    expect(await refusal(overlay(`upperdir=${join(snaps, '3', 'fs')}`))).toContain('no lowerdir');
    expect(await refusal(overlay(`lowerdir=${fs1}`, `lowerdir=/etc`))).toContain('lowerdir twice');
    expect(await refusal([{ type: 'overlay', source: '/etc', options: [`lowerdir=${fs1}`] }])).toContain(
      'rootfs[0].source "/etc" must be "overlay"',
    );
  });

  it('refuses other types, unknown options, smuggled commas and an empty rootfs', async () => {
    const fs1 = join(snaps, '1', 'fs');
    expect(await refusal([{ type: 'tmpfs', source: 'tmpfs', options: [] }])).toContain(
      'rootfs[0].type "tmpfs"',
    );
    expect(await refusal([{ type: 'bind', source: fs1, options: ['rbind', 'X-mount.mkdir'] }])).toContain(
      '"X-mount.mkdir" is not an option of a snapshot bind',
    );
    expect(await refusal(overlay(`lowerdir=${fs1},upperdir=/etc`))).toContain('contains a comma');
    expect(await refusal(overlay(`lowerdir=${fs1}`, 'context=system_u'))).toContain('"context=system_u"');
    expect(
      await refusal([
        { type: 'bind', source: fs1, options: ['rbind'] },
        { type: 'bind', source: '/etc', options: ['rbind'] },
      ]),
    ).toContain('rootfs[1].source "/etc"');
    expect(await refusal([])).toContain('rootfs is empty');
  });
});
