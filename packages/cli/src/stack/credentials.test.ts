import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedCredentials, embeddedCredentials } from './credentials.js';

const dirs: string[] = [];
function stateRoot(): string {
  const d = mkdtempSync(join(tmpdir(), 'berth-creds-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('embeddedCredentials', () => {
  it('generates random secrets once, in a 0600 file in a 0700 directory, and reuses them', () => {
    const file = join(stateRoot(), 'embedded', 'credentials.json');
    const first = embeddedCredentials(file);
    expect(EmbeddedCredentials.parse(first)).toEqual(first);
    // 32 random bytes in base64url.
    expect(first.nats.password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.redis.password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.nats.password).not.toBe(first.redis.password);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
    expect(embeddedCredentials(file)).toEqual(first);
    // No temp file is left beside it.
    expect(readdirSync(join(file, '..'))).toEqual(['credentials.json']);
    // Another installation gets other secrets.
    const other = embeddedCredentials(join(stateRoot(), 'embedded', 'credentials.json'));
    expect(other.nats.password).not.toBe(first.nats.password);
  });

  it('narrows a widened file and directory back to 0600 / 0700', () => {
    const file = join(stateRoot(), 'embedded', 'credentials.json');
    embeddedCredentials(file);
    chmodSync(file, 0o644);
    chmodSync(join(file, '..'), 0o755);
    embeddedCredentials(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(file, '..')).mode & 0o777).toBe(0o700);
  });

  it('refuses a damaged file with a line naming it, rather than silently replacing the secrets', () => {
    const file = join(stateRoot(), 'embedded', 'credentials.json');
    embeddedCredentials(file);
    writeFileSync(file, '{"version":1,"nats":{}}');
    expect(() => embeddedCredentials(file)).toThrow(`credentials file ${file} is invalid`);
    writeFileSync(file, 'not json');
    try {
      embeddedCredentials(file);
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe(Code.FAILED_PRECONDITION);
      expect((err as Error).message).toContain('remove it to generate new credentials');
    }
  });
});
