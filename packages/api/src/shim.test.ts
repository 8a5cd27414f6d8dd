import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CniArgValue, Hostname, isSignal, Namespace, podAddresses, ShimNetworkSetupRequest } from './shim.js';
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

describe('values that land in files or reach the kernel', () => {
  it('refuses DNS servers, searches and options that could add lines to resolv.conf', () => {
    const bad = [
      { servers: ['1.1.1.1\nnameserver 6.6.6.6'] },
      { servers: ['dns.example'] },
      { searches: ['example.com\noptions debug'] },
      { options: ['ndots:5 rotate'] },
      { options: ['x\n'] },
    ];
    for (const dns of bad) {
      const r = CreateContainerRequest.safeParse({ image: 'busybox', dns });
      expect(r.success, JSON.stringify(dns)).toBe(false);
      expect(r.error?.issues[0]?.path[0]).toBe('dns');
    }
    const ok = CreateContainerRequest.safeParse({
      image: 'busybox',
      dns: {
        servers: ['1.1.1.1', '2001:db8::1'],
        searches: ['svc.cluster.local'],
        options: ['ndots:5', 'edns0'],
      },
    });
    expect(ok.success).toBe(true);
  });

  it('takes Linux signals by name or number and refuses the rest at create', () => {
    for (const s of ['SIGTERM', 'term', 'KILL', 'SIGRTMIN+3', 'RTMAX-1', '9', 64, 1])
      expect(isSignal(s), String(s)).toBe(true);
    for (const s of ['SIGFOO', '', 'SIGRTMIN+31', '0', '65', 0, 65, 'TERM\n'])
      expect(isSignal(s), String(s)).toBe(false);
    const r = CreateContainerRequest.safeParse({ image: 'busybox', stopSignal: 'SIGFOO' });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['stopSignal']);
  });

  it('takes namespaces only as names', () => {
    for (const n of ['default', 'k8s.io', 'a_b-c']) expect(Namespace.safeParse(n).success, n).toBe(true);
    for (const n of ['', '../../tmp', 'a/b', '.a', 'a..b', 'a\nb', 'x'.repeat(77)]) {
      expect(Namespace.safeParse(n).success, JSON.stringify(n)).toBe(false);
    }
  });
});

describe('podAddresses', () => {
  it('gives the addresses without prefix lengths, IPv4 first', () => {
    expect(
      podAddresses([
        { address: 'fd00::5/64', version: 6 },
        { address: '10.88.0.5/16', version: 4 },
      ]),
    ).toEqual(['10.88.0.5', 'fd00::5']);
    expect(podAddresses([])).toEqual([]);
  });
});

describe('CniArgValue', () => {
  it('takes pod names, namespaces, uids and ids, and refuses separators, white space and C0/C1 controls', () => {
    for (const v of [
      'default',
      'web-1',
      'f47ac10b-58cc-4372-a567-0e02b2c3d479',
      'a'.repeat(64),
      'caf\u00e9',
    ]) {
      expect(CniArgValue.safeParse(v).success, v).toBe(true);
    }
    for (const v of [
      '',
      'a;b',
      'a=b',
      'a b',
      'a\tb',
      'a\u0000',
      'a\u001f',
      'a\u007f',
      'a\u0085',
      'a\u009f',
      'x'.repeat(254),
    ]) {
      expect(CniArgValue.safeParse(v).success, JSON.stringify(v)).toBe(false);
    }
  });
});

describe('the services source', () => {
  // A Unicode property escape (\p{...}) in a regular expression built at module load keeps ICU's
  // data allocated above the parser's freed memory: ~5 MB of every service's malloc heap that
  // glibc cannot give back (bisected to CniArgValue's \p{Cc}, docs/benchmarks.md).
  it('has no Unicode property escape in a regular expression', () => {
    const packages = join(import.meta.dirname, '..', '..');
    const found: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'node_modules' && e.name !== 'dist') walk(p);
        } else if (
          e.name.endsWith('.ts') &&
          !e.name.endsWith('.test.ts') &&
          /\\[pP]\{/.test(readFileSync(p, 'utf8'))
        ) {
          found.push(p);
        }
      }
    };
    for (const pkg of readdirSync(packages)) walk(join(packages, pkg, 'src'));
    expect(found).toEqual([]);
  });
});
