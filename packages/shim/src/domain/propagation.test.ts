import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkBindPropagation, parseMountinfo } from './propagation.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-prop-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A mountinfo with `/` private and the test dir as a mount of the given tags. */
const table = (tags: string) =>
  [
    '22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw',
    `40 22 0:50 / ${dir.replace(/ /g, '\\040')} rw ${tags} - tmpfs tmpfs rw`,
    '',
  ].join('\n');
const spec = (option: string) => ({ mounts: [{ source: dir, options: ['rbind', option, 'rw'] }] });

describe('bind mount propagation on the node', () => {
  it('parses optional fields and escaped mount points', () => {
    const m = parseMountinfo(
      '36 35 98:0 /a /mnt/with\\040space rw,noatime shared:3 master:1 - ext3 /dev/root rw\n',
    );
    expect(m).toEqual([{ mountPoint: '/mnt/with space', tags: ['shared:3', 'master:1'] }]);
  });

  it('lets rshared through only on a shared mount, rslave on shared or slave', async () => {
    await expect(checkBindPropagation(spec('rshared'), table('shared:7'))).resolves.toBeUndefined();
    await expect(checkBindPropagation(spec('rslave'), table('master:7'))).resolves.toBeUndefined();
    await expect(checkBindPropagation(spec('rslave'), table('shared:7'))).resolves.toBeUndefined();
    await expect(checkBindPropagation(spec('rshared'), table('master:7'))).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      message: expect.stringContaining(`is on mount "${dir}", which is not shared`),
    });
    await expect(checkBindPropagation(spec('rslave'), table(''))).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    // Private mounts are never checked.
    await expect(checkBindPropagation(spec('rprivate'), table(''))).resolves.toBeUndefined();
  });

  it('names a source that does not exist', async () => {
    const s = { mounts: [{ source: join(dir, 'nope'), options: ['rbind', 'rshared'] }] };
    await expect(checkBindPropagation(s, table('shared:1'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});
