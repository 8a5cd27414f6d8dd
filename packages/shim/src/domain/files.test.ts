import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOG_MODE, touchLog } from './files.js';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-files-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const codeOf = (f: () => void): string | undefined => {
  try {
    f();
  } catch (err) {
    return err instanceof BerthError ? err.code : `not a BerthError: ${String(err)}`;
  }
  return undefined;
};

describe('touchLog', () => {
  it('makes a missing log with LOG_MODE and leaves an existing one as it is', () => {
    const fresh = join(dir, 'fresh.log');
    touchLog(fresh);
    expect(statSync(fresh).mode & 0o777).toBe(LOG_MODE);
    const kept = join(dir, 'kept.log');
    writeFileSync(kept, 'line 1\n', { mode: 0o600 });
    touchLog(kept);
    expect(readFileSync(kept, 'utf8')).toBe('line 1\n');
    expect(statSync(kept).mode & 0o777).toBe(0o600);
  });

  it('refuses a FIFO or a directory at the path without waiting on it', () => {
    const fifo = join(dir, 'fifo.log');
    execFileSync('mkfifo', [fifo]);
    // Inline: a blocking open of a FIFO with no writer would hang the test (and the shim) here.
    expect(codeOf(() => touchLog(fifo))).toBe('INVALID_ARGUMENT');
    const sub = join(dir, 'dir.log');
    mkdirSync(sub);
    expect(codeOf(() => touchLog(sub))).toBe('INVALID_ARGUMENT');
  });
});
