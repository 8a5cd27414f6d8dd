import { describe, expect, it } from 'vitest';
import { Hostname, ShimNetworkSetupRequest } from './shim.js';
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

describe('ShimNetworkSetupRequest', () => {
  it('defaults port mappings to none and their protocol to tcp', () => {
    expect(ShimNetworkSetupRequest.parse({ podId: 'p1' })).toEqual({ podId: 'p1', portMappings: [] });
    expect(
      ShimNetworkSetupRequest.parse({ podId: 'p1', portMappings: [{ hostPort: 8080, containerPort: 80 }] })
        .portMappings,
    ).toEqual([{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }]);
  });

  it('refuses pod ids that are not file names or CNI container ids, and ports out of range', () => {
    for (const podId of ['', '../x', 'a/b', '-a', 'a+b', 'x'.repeat(129)]) {
      expect(ShimNetworkSetupRequest.safeParse({ podId }).success, podId).toBe(false);
    }
    const r = ShimNetworkSetupRequest.safeParse({
      podId: 'p',
      portMappings: [{ hostPort: 0, containerPort: 80 }],
    });
    expect(r.error?.issues[0]?.path).toEqual(['portMappings', 0, 'hostPort']);
  });
});
