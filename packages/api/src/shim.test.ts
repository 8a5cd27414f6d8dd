import { describe, expect, it } from 'vitest';
import { Hostname } from './shim.js';
import { CreateContainerRequest } from './task.js';

describe('Hostname', () => {
  it('takes RFC 1123 host names', () => {
    for (const h of ['box', 'web-1', 'a.b-c.example', '3eaa9f00e202', 'x'.repeat(63)]) {
      expect(Hostname.safeParse(h).success, h).toBe(true);
    }
  });

  it('refuses what could break /etc/hosts or is not a host name', () => {
    for (const h of ['', 'a\nb', 'a b', '-a', 'a-', 'a_b', 'a..b', 'x'.repeat(64), `${'a.'.repeat(127)}ab`]) {
      expect(Hostname.safeParse(h).success, JSON.stringify(h)).toBe(false);
    }
  });

  it('is checked on a container create request, naming the field', () => {
    const r = CreateContainerRequest.safeParse({ image: 'busybox', hostname: 'bad host\n127.0.0.1 evil' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['hostname']);
    expect(r.error?.issues[0]?.message).toContain('RFC 1123');
  });
});
