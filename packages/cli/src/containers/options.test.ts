import { describe, expect, it } from 'vitest';
import { parseBytes, parseVolume, toCreateRequest } from './options.js';

describe('container flags', () => {
  it('parses docker sizes and refuses nonsense', () => {
    expect(parseBytes('--memory', '64m')).toBe(64 * 1024 * 1024);
    expect(parseBytes('--memory', '1g')).toBe(1024 ** 3);
    expect(parseBytes('--memory', '512MiB')).toBe(512 * 1024 * 1024);
    expect(parseBytes('--memory', '1048576')).toBe(1048576);
    expect(() => parseBytes('--memory', 'lots')).toThrow(/invalid --memory value "lots"/);
    expect(() => parseBytes('--memory', '0')).toThrow(/must be positive/);
  });

  it('parses bind volumes', () => {
    expect(parseVolume('/a:/b')).toEqual({ source: '/a', destination: '/b', readonly: false });
    expect(parseVolume('/a:/b:ro')).toEqual({ source: '/a', destination: '/b', readonly: true });
    expect(() => parseVolume('rel:/b')).toThrow(/host path must be absolute/);
    expect(() => parseVolume('/a:/b:zz')).toThrow(/mode must be ro or rw/);
    expect(() => parseVolume('/a')).toThrow(/expected/);
  });

  it('builds a create request from run flags', () => {
    process.env.BERTH_TEST_PASS = 'through';
    const req = toCreateRequest(
      {
        values: {
          name: 'web',
          env: ['A=1', 'BERTH_TEST_PASS', 'UNSET_VAR_XYZ'],
          user: 'www',
          memory: '32m',
          cpus: '1.5',
          'pids-limit': '10',
          'read-only': true,
          network: 'host',
          label: ['a=b', 'flag'],
          'security-opt': ['no-new-privileges'],
          entrypoint: '/bin/sh',
          tty: true,
          interactive: true,
        },
        positionals: ['busybox', '-c', 'echo hi'],
      },
      'node1',
    );
    expect(req).toEqual({
      image: 'busybox',
      node: 'node1',
      cmd: ['-c', 'echo hi'],
      name: 'web',
      env: ['A=1', 'BERTH_TEST_PASS=through'],
      user: 'www',
      entrypoint: ['/bin/sh'],
      resources: { memoryBytes: 32 * 1024 * 1024, cpus: 1.5, pidsLimit: 10 },
      readonlyRootfs: true,
      network: 'host',
      labels: { a: 'b', flag: '' },
      noNewPrivileges: true,
      tty: true,
      stdin: true,
    });
    expect(() => toCreateRequest({ values: { network: 'overlay' }, positionals: ['x'] }, 'n')).toThrow(
      /invalid network "overlay"/,
    );
    expect(() =>
      toCreateRequest({ values: { network: 'none', publish: ['80:80'] }, positionals: ['x'] }, 'n'),
    ).toThrow('-p publishes ports only with --network bridge, not none');
  });

  it('defaults to the bridge network and parses -p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]', () => {
    const req = toCreateRequest(
      {
        values: { publish: ['8080:80', '127.0.0.1:5353:53/udp', '[::1]:9000:9000/tcp'] },
        positionals: ['x'],
      },
      'n',
    );
    expect(req.network).toBe('bridge');
    expect(req.ports).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '127.0.0.1' },
      { hostPort: 9000, containerPort: 9000, protocol: 'tcp', hostIP: '::1' },
    ]);
    for (const [bad, msg] of [
      ['80', 'expected [HOSTIP:]HOSTPORT:CONTAINERPORT'],
      ['0:80', 'host port "0" is not a port'],
      ['80:70000', 'container port "70000" is not a port'],
      ['80:80/sctp', 'protocol "sctp" is not tcp or udp'],
      ['host:80:80', '"host" is not an IP address'],
    ] as const) {
      expect(() => toCreateRequest({ values: { publish: [bad] }, positionals: ['x'] }, 'n'), bad).toThrow(
        msg,
      );
    }
    expect(() => toCreateRequest({ values: { 'pids-limit': '1.5' }, positionals: ['x'] }, 'n')).toThrow(
      /--pids-limit/,
    );
    expect(() => toCreateRequest({ values: {}, positionals: [] }, 'n')).toThrow(/an image is required/);
  });
});
