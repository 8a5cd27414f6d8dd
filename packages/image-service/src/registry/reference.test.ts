import { Code } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { formatReference, parseReference } from './reference.js';

describe('parseReference', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['user/app:v2', 'docker.io/user/app:v2'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/a/b/c:t', 'localhost:5000/a/b/c:t'],
    ['ghcr.io/o/r', 'ghcr.io/o/r:latest'],
    [`a@sha256:${'a'.repeat(64)}`, `docker.io/library/a@sha256:${'a'.repeat(64)}`],
    [`q.io/a:t@sha256:${'b'.repeat(64)}`, `q.io/a:t@sha256:${'b'.repeat(64)}`],
    ['127.0.0.1:5000/x_y.z-w', '127.0.0.1:5000/x_y.z-w:latest'],
  ])('%s -> %s', (input, want) => {
    expect(formatReference(parseReference(input))).toBe(want);
  });

  it.each([
    '',
    'Busybox',
    'a//b',
    'a:',
    'a:-x',
    'a@sha256:abc',
    'a@md5:0123',
    ' busybox',
    'a/b_',
    `a:${'t'.repeat(129)}`,
    `${'a'.repeat(256)}`,
  ])('refuses %j with INVALID_ARGUMENT naming it', (input) => {
    try {
      parseReference(input);
      expect.unreachable();
    } catch (err) {
      expect((err as { code: string }).code).toBe(Code.INVALID_ARGUMENT);
      expect((err as Error).message).toContain(`"${input}"`);
    }
  });
});
