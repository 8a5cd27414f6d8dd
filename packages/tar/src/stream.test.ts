import { BerthError } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { readTar } from './stream.js';
import { type TarWriteEntry, tarBuffer, tarHeader } from './writer.js';

/** A source that yields `tar` in pieces of `step` bytes and records how far it was read. */
function source(tar: Buffer, step: number) {
  const state = { read: 0, closed: false };
  const it = (async function* () {
    try {
      for (let o = 0; o < tar.length; o += step) {
        state.read = Math.min(tar.length, o + step);
        yield new Uint8Array(tar.buffer, tar.byteOffset + o, Math.min(step, tar.length - o));
      }
    } finally {
      state.closed = true;
    }
  })();
  return { it, state };
}

const entries: TarWriteEntry[] = [
  { name: 'blobs/', type: 'dir', mode: 0o755 },
  { name: 'blobs/sha256/a', type: 'file', data: Buffer.alloc(200_000, 1) },
  { name: 'link', type: 'symlink', linkname: 'blobs/sha256/a' },
  { name: 'skipped', type: 'file', data: Buffer.alloc(3000, 2) },
  { name: 'empty', type: 'file' },
  { name: `${'x/'.repeat(80)}index.json`, type: 'file', data: Buffer.from('{}') },
];

describe('readTar', () => {
  it('streams bodies, skips unread ones and reads partly read ones to their end', async () => {
    const tar = tarBuffer(entries);
    for (const step of [1 << 20, 4096, 100]) {
      const seen: string[] = [];
      for await (const { header, body } of readTar(source(tar, step).it)) {
        seen.push(`${header.type}:${header.name.slice(-10)}:${header.size}`);
        if (header.name === 'blobs/sha256/a') {
          let n = 0;
          for await (const c of body) {
            expect(c.every((b) => b === 1)).toBe(true);
            n += c.length;
          }
          expect(n).toBe(200_000);
        }
        if (header.name === 'empty') {
          for await (const _ of body) throw new Error('an empty file has no data');
        }
        if (header.name.endsWith('index.json')) {
          // Reads one chunk and leaves the rest: the next entry still comes out right.
          for await (const c of body) {
            expect(c.toString()).toBe('{}');
            break;
          }
        }
      }
      expect(seen).toEqual([
        'dir:blobs/:0',
        'file:s/sha256/a:200000',
        'symlink:link:0',
        'file:skipped:3000',
        'file:empty:0',
        'file:index.json:2',
      ]);
    }
  });

  it('does not read the source ahead of the consumer, and closes it when the consumer stops', async () => {
    const tar = tarBuffer(entries);
    const src = source(tar, 512);
    for await (const { header } of readTar(src.it)) {
      expect(header.name).toBe('blobs/');
      break;
    }
    expect(src.state.read).toBe(512);
    expect(src.state.closed).toBe(true);
  });

  it('refuses a truncated archive with INVALID_ARGUMENT, also inside a body being read', async () => {
    const tar = tarBuffer(entries, { endMarker: false });
    const cut = tar.subarray(0, 512 * 2 + 50_000);
    let err: unknown;
    try {
      for await (const { body } of readTar(source(cut, 4096).it)) for await (const _ of body);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('INVALID_ARGUMENT');
  });

  it('ends at the end-of-archive marker without reading the rest of the source', async () => {
    const tar = Buffer.concat([tarBuffer([{ name: 'a', type: 'file' }]), Buffer.alloc(1 << 20, 0x41)]);
    const src = source(tar, 1024);
    const names: string[] = [];
    for await (const { header } of readTar(src.it)) names.push(header.name);
    expect(names).toEqual(['a']);
    expect(src.state.read).toBeLessThan(tar.length);
    expect(src.state.closed).toBe(true);
  });

  it('hands out a header the writer made for data it streams itself', async () => {
    const data = Buffer.from('streamed');
    const tar = Buffer.concat([tarHeader({ name: 'f', type: 'file', mode: 0o600 }, data.length), data]);
    const out: string[] = [];
    for await (const { header, body } of readTar(source(Buffer.concat([tar, Buffer.alloc(1528)]), 7).it)) {
      expect(header.mode).toBe(0o600);
      for await (const c of body) out.push(c.toString());
    }
    expect(out.join('')).toBe('streamed');
  });
});
