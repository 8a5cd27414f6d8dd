import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CreateContainerRequest } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSpec } from './generate.js';

// The generated spec run by the real runc on this machine (no shim): proves runc accepts every
// default (mounts, namespaces, cgroups) and that the container sees what we meant. The node's
// facts a shim fills in (names in the rootfs, capabilities) are given here as numbers and as
// containerd's default set, what a shim on a full-capability node writes.
const NODE_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];
let root: string;
let rootfs: string;
const passwdText = 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/home/www:/bin/sh\n';
const groupText = 'root:x:0:\nwww:x:33:\nstaff:x:50:www\n';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-runc-'));
  rootfs = join(root, 'rootfs');
  for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev'])
    await mkdir(join(rootfs, d), { recursive: true });
  execFileSync('cp', ['/usr/bin/busybox', join(rootfs, 'bin', 'busybox')]);
  for (const a of ['sh', 'cat', 'id', 'hostname', 'grep', 'touch', 'echo', 'ls']) {
    await symlink('busybox', join(rootfs, 'bin', a));
  }
  await writeFile(join(rootfs, 'etc', 'passwd'), passwdText);
  await writeFile(join(rootfs, 'etc', 'group'), groupText);
});
afterAll(async () => rm(root, { recursive: true, force: true }));

async function runInRunc(req: Partial<CreateContainerRequest>): Promise<{ code: number; out: string }> {
  const id = randomBytes(32).toString('hex');
  const bundle = join(root, id.slice(0, 12));
  await mkdir(bundle);
  const files = {
    hosts: join(bundle, 'hosts'),
    resolvConf: join(bundle, 'resolv.conf'),
    hostname: join(bundle, 'hostname'),
  };
  const gen = generateSpec(
    {
      id,
      namespace: 'test',
      request: { image: 'busybox', ...req },
      image: { Env: ['PATH=/bin'] },
      files,
    },
    'host',
  );
  await writeFile(files.hosts, `127.0.0.1\tlocalhost\n127.0.1.1\t${gen.hostname}\n`);
  await writeFile(files.resolvConf, 'nameserver 192.0.2.1\n');
  await writeFile(files.hostname, `${gen.hostname}\n`);
  const process = {
    ...(gen.spec.process as object),
    capabilities: { bounding: NODE_CAPS, effective: NODE_CAPS, permitted: NODE_CAPS },
  };
  const spec = { ...gen.spec, process, root: { ...(gen.spec.root as object), path: rootfs } };
  await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
  const r = spawnSync('runc', ['--root', join(root, 'state'), 'run', '--bundle', bundle, id], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

describe('generated spec under runc', () => {
  it('runs with containerd defaults', async () => {
    const r = await runInRunc({
      cmd: [
        'sh',
        '-c',
        'grep CapEff /proc/self/status; hostname; cat /etc/resolv.conf; ls /sys/class/net; id -u',
      ],
    });
    expect(r.out).toContain('CapEff:\t00000000a80425fb');
    expect(r.out).toContain('nameserver 192.0.2.1');
    expect(r.out).toMatch(/\nlo\n0\n$/);
    expect(r.code).toBe(0);
  });

  it('applies user, workdir, read-only rootfs, no_new_privs and limits', async () => {
    const r = await runInRunc({
      cmd: [
        'sh',
        '-c',
        'id -u; id -G; pwd; touch /x 2>/dev/null || echo ro; grep NoNewPrivs /proc/self/status; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max',
      ],
      user: '33:33',
      additionalGids: [50],
      workdir: '/tmp',
      readonlyRootfs: true,
      noNewPrivileges: true,
      resources: { memoryBytes: 64 * 1024 * 1024, pidsLimit: 50, cpus: 0.5 },
    });
    expect(r.out.split('\n').slice(0, 5)).toEqual(['33', '33 50', '/tmp', 'ro', 'NoNewPrivs:\t1']);
    expect(r.out).toContain(String(64 * 1024 * 1024));
    expect(r.code).toBe(0);
  });

  it('passes the exit code through', async () => {
    expect((await runInRunc({ cmd: ['sh', '-c', 'exit 42'] })).code).toBe(42);
  });
});
