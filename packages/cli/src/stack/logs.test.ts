import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { follow, serviceLogPath, tailLines } from './logs.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-logs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('service logs', () => {
  it('finds name.log, or the numbered file of a replica', () => {
    writeFileSync(join(dir, 'shim.log'), '');
    writeFileSync(join(dir, 'image-service-1.log'), '');
    writeFileSync(join(dir, 'image-service-2.log'), '');
    expect(serviceLogPath(dir, 'shim')).toBe(join(dir, 'shim.log'));
    expect(serviceLogPath(dir, 'image-service')).toBe(join(dir, 'image-service-1.log'));
    expect(serviceLogPath(dir, 'image-service', 2)).toBe(join(dir, 'image-service-2.log'));
    expect(() => serviceLogPath(dir, 'image-service', 3)).toThrow('no log for replica 3 of "image-service"');
    expect(() => serviceLogPath(dir, 'task-service')).toThrow('no log for "task-service"');
    expect(() => serviceLogPath(dir, 'sshd')).toThrow('unknown service "sshd"');
  });

  it('prints the last N lines, or everything', () => {
    const f = join(dir, 'tail.log');
    writeFileSync(f, 'a\nb\nc\nd\n');
    expect(tailLines(f, 2)).toEqual({ text: 'c\nd\n', end: 8 });
    expect(tailLines(f, 0).text).toBe('');
    expect(tailLines(f, 10).text).toBe('a\nb\nc\nd\n');
    expect(tailLines(f, undefined).text).toBe('a\nb\nc\nd\n');
  });

  it('follows appended output and starts over after a rotation', async () => {
    const f = join(dir, 'follow.log');
    writeFileSync(f, 'old\n');
    let seen = '';
    const stop = new AbortController();
    const done = follow(
      f,
      4,
      (s) => {
        seen += s;
      },
      stop.signal,
    );
    appendFileSync(f, 'one\n');
    await waitUntil(() => seen === 'one\n');
    renameSync(f, `${f}.1`);
    writeFileSync(f, 'two and more\n');
    await waitUntil(() => seen === 'one\ntwo and more\n');
    stop.abort();
    await done;
  });
});

async function waitUntil(cond: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
