// Disk faults on a real 1 MiB tmpfs: a short write is not an error to Node, writeFully makes it one,
// and diskError turns the errno into RESOURCE_EXHAUSTED naming the file.
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { ReplyError } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diskError, diskFaultOf, storeRefusal, writeFully } from './disk.js';

const MiB = 1024 * 1024;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'berth-test', dir]);
});
afterAll(async () => {
  execFileSync('umount', ['-l', dir]);
  await rm(dir, { recursive: true, force: true });
});

describe('writes on a full disk', () => {
  it('FileHandle.writev takes part of a write without an error; writeFully fails with ENOSPC', async () => {
    const fh = await open(join(dir, 'short'), 'w');
    try {
      const { bytesWritten } = await fh.writev([Buffer.alloc(2 * MiB, 1)], 0);
      // The reason writeFully exists: a bare writev reports success for the part that fit.
      expect(bytesWritten).toBeGreaterThan(0);
      expect(bytesWritten).toBeLessThan(2 * MiB);
    } finally {
      await fh.close();
    }
    await rm(join(dir, 'short'));
    const fh2 = await open(join(dir, 'full'), 'w');
    try {
      const err = await writeFully(fh2, [Buffer.alloc(MiB / 2, 1), Buffer.alloc(2 * MiB, 2)], 0).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(diskFaultOf(err)).toBe('ENOSPC');
    } finally {
      await fh2.close();
    }
    // Everything that fit was written contiguously from the start: no hole, nothing skipped.
    expect((await stat(join(dir, 'full'))).size).toBeGreaterThan(MiB / 2);
    await rm(join(dir, 'full'));
  });

  it('writeFully writes buffers whole when they fit, at a position or at the offset', async () => {
    const fh = await open(join(dir, 'ok'), 'w+');
    try {
      expect(await writeFully(fh, [Buffer.from('abc'), Buffer.alloc(0), Buffer.from('def')], null)).toBe(6);
      expect(await writeFully(fh, [Buffer.from('XY')], 1)).toBe(2);
      const buf = Buffer.alloc(6);
      await fh.read(buf, 0, 6, 0);
      expect(buf.toString()).toBe('aXYdef');
    } finally {
      await fh.close();
    }
    await rm(join(dir, 'ok'));
  });

  it('diskError names the file and the errno, and passes other errors by', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const e = diskError(enospc, { what: 'blob sha256:aa', path: '/s/ingest/aa/data-3', after: 'removed' });
    expect(e).toBeInstanceOf(BerthError);
    expect(e?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(e?.message).toBe(
      'blob sha256:aa: cannot write /s/ingest/aa/data-3: no space left on device (ENOSPC); removed',
    );
    const withPath = Object.assign(new Error('EDQUOT'), { code: 'EDQUOT', path: '/s/x' });
    expect(diskError(withPath, { what: 'w', path: '/other' })?.message).toBe(
      'w: cannot write /s/x: disk quota exceeded (EDQUOT)',
    );
    const wrapped = new BerthError(Code.UNAVAILABLE, 'cut', { cause: { code: 'EIO' } });
    expect(diskError(wrapped, { what: 'w', path: '/p' })?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(diskError(Object.assign(new Error('x'), { code: 'ENOENT' }), { what: 'w', path: '/p' })).toBe(
      undefined,
    );
  });
});

describe('a Redis that cannot persist', () => {
  it('its MISCONF refusal becomes RESOURCE_EXHAUSTED; other replies pass by', () => {
    const misconf = new ReplyError(
      'MISCONF Errors writing to the AOF file: No space left on device',
    ) as unknown as Error;
    const e = storeRefusal(misconf);
    expect(e?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(e?.message).toBe(
      'redis refuses writes it cannot persist (is the disk of its data directory full?): MISCONF Errors writing to the AOF file: No space left on device',
    );
    expect(
      storeRefusal(new ReplyError('WRONGTYPE Operation against a key') as unknown as Error),
    ).toBeUndefined();
    expect(storeRefusal(new BerthError(Code.INTERNAL, 'MISCONF lookalike'))).toBeUndefined();
  });
});
