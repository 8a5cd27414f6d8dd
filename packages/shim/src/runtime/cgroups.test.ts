import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cgroupVersion,
  oomKillsOf,
  parseMountinfo,
  parseProcCgroup,
  readV1Stats,
  readV2Stats,
} from './cgroups.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-cgroups-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function files(sub: string, entries: Record<string, string>): Promise<string> {
  const d = join(dir, sub);
  await mkdir(d, { recursive: true });
  for (const [k, v] of Object.entries(entries)) await writeFile(join(d, k), v);
  return d;
}

describe('cgroup discovery', () => {
  it('finds v1 controller mounts and the v2 mount in mountinfo', () => {
    const info = [
      '30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
      '33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
      '34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n');
    const m = parseMountinfo(info);
    expect(m.v2).toEqual({ mountPoint: '/sys/fs/cgroup/unified', root: '/' });
    expect(m.v1.find((x) => x.controllers.includes('memory'))?.mountPoint).toBe('/sys/fs/cgroup/memory');
    expect(m.v1.find((x) => x.controllers.includes('cpuacct'))?.mountPoint).toBe(
      '/sys/fs/cgroup/cpu,cpuacct',
    );
  });

  it('maps /proc/<pid>/cgroup lines to controllers and the v2 path', () => {
    const cg = parseProcCgroup(
      '4:memory:/berth/default/abc\n2:cpu,cpuacct:/berth/default/abc\n0::/berth/default/abc\n',
    );
    expect(cg.get('memory')).toBe('/berth/default/abc');
    expect(cg.get('cpuacct')).toBe('/berth/default/abc');
    expect(cg.get('')).toBe('/berth/default/abc');
  });

  it('detects the version runc uses on this host', async () => {
    expect([1, 2]).toContain(await cgroupVersion());
  });
});

describe('OOM kills of a cgroup by its spec path', () => {
  it('reads oom_kill of memory.events on v2, of memory.oom_control on v1, never outside the hierarchy', async () => {
    const v2 = await files('oom-v2/kubepods/pod1/c1', {
      'memory.events': 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n',
    });
    const v2dir = join(v2, '..', '..', '..');
    expect(await oomKillsOf('/kubepods/pod1/c1', { version: 2, dir: v2dir })).toBe(1);
    expect(await oomKillsOf('/kubepods/pod1/gone', { version: 2, dir: v2dir })).toBeUndefined();
    expect(await oomKillsOf('kubepods/pod1/c1', { version: 2, dir: v2dir })).toBeUndefined();
    const v1 = await files('oom-v1/memory/berth/ns/t1', {
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    });
    const v1dir = join(v1, '..', '..', '..');
    expect(await oomKillsOf('/berth/ns/t1', { version: 1, dir: v1dir })).toBe(2);
    // A path climbing out is cleaned as runc cleans it: it stays below the hierarchy's root.
    await files('oom-v1/decoy', { 'memory.oom_control': 'oom_kill 9\n' });
    expect(await oomKillsOf('/../decoy', { version: 1, dir: v1dir })).toBeUndefined();
    expect(await oomKillsOf('/../memory/berth/ns/t1', { version: 1, dir: v1dir })).toBeUndefined();
  });

  it("finds this host's hierarchy", async () => {
    // A cgroup that does not exist: no count, whatever the host's version.
    expect(await oomKillsOf(`/berth-test-absent-${process.pid}`)).toBeUndefined();
  });
});

describe('cgroup stats files', () => {
  it('reads v1 files (cpuacct ticks, unlimited memory as absent)', async () => {
    const s = await readV1Stats({
      cpuacct: await files('v1/cpuacct', {
        'cpuacct.usage': '2500000000\n',
        'cpuacct.stat': 'user 150\nsystem 50\n',
      }),
      cpu: await files('v1/cpu', { 'cpu.stat': 'nr_periods 10\nnr_throttled 2\nthrottled_time 5000\n' }),
      memory: await files('v1/memory', {
        'memory.usage_in_bytes': '1048576\n',
        'memory.limit_in_bytes': '9223372036854771712\n',
        'memory.max_usage_in_bytes': '2097152\n',
        'memory.stat':
          'cache 0\ntotal_rss 524288\ntotal_cache 262144\ntotal_inactive_file 131072\npgfault 1\ntotal_pgfault 40\ntotal_pgmajfault 2\n',
        'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 1\n',
      }),
      pids: await files('v1/pids', { 'pids.current': '3\n', 'pids.max': 'max\n' }),
    });
    expect(s).toMatchObject({
      cgroupVersion: 1,
      cpu: {
        usageNs: 2_500_000_000,
        userNs: 1_500_000_000,
        systemNs: 500_000_000,
        throttledPeriods: 2,
        throttledNs: 5000,
      },
      memory: {
        usageBytes: 1048576,
        workingSetBytes: 1048576 - 131072,
        rssBytes: 524288,
        cacheBytes: 262144,
        maxUsageBytes: 2097152,
        oomKills: 1,
        pageFaults: 40,
        majorPageFaults: 2,
      },
      pids: { current: 3 },
    });
    expect(s.memory.limitBytes).toBeUndefined();
    expect(s.pids.limit).toBeUndefined();
  });

  it('reads v2 files (usec to ns, max as absent)', async () => {
    const d = await files('v2', {
      'cpu.stat': 'usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_throttled 4\nthrottled_usec 7\n',
      'memory.current': '4096\n',
      'memory.max': '8192\n',
      'memory.peak': '6000\n',
      'memory.stat': 'anon 1000\nfile 2000\ninactive_file 96\npgfault 77\npgmajfault 3\n',
      'memory.events': 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n',
      'pids.current': '2\n',
      'pids.max': '100\n',
    });
    expect(await readV2Stats(d)).toMatchObject({
      cgroupVersion: 2,
      cpu: {
        usageNs: 3_000_000,
        userNs: 2_000_000,
        systemNs: 1_000_000,
        throttledPeriods: 4,
        throttledNs: 7000,
      },
      memory: {
        usageBytes: 4096,
        limitBytes: 8192,
        workingSetBytes: 4000,
        rssBytes: 1000,
        cacheBytes: 2000,
        maxUsageBytes: 6000,
        oomKills: 1,
        pageFaults: 77,
        majorPageFaults: 3,
      },
      pids: { current: 2, limit: 100 },
    });
  });
});

const unified = '/sys/fs/cgroup/unified';
const hasUnified = await import('node:fs/promises')
  .then((m) => m.statfs(unified))
  .then((s) => s.type === 0x63677270)
  .catch(() => false);

describe.skipIf(!hasUnified)(
  'cgroup v2 on the real kernel (the hybrid host mounts it at /sys/fs/cgroup/unified)',
  () => {
    it('reads cpu time of a process moved into a fresh v2 cgroup', async () => {
      const { spawn } = await import('node:child_process');
      const { rmdir, readFile } = await import('node:fs/promises');
      const cg = join(unified, `berth-test-${process.pid}-${Date.now()}`);
      await mkdir(cg);
      const child = spawn(
        '/usr/bin/busybox',
        ['sh', '-c', 'read go; i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo done; read end'],
        {
          stdio: ['pipe', 'pipe', 'ignore'],
        },
      );
      try {
        await writeFile(join(cg, 'cgroup.procs'), String(child.pid));
        child.stdin?.write('go\n');
        await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
        const s = await readV2Stats(cg);
        expect(s.cgroupVersion).toBe(2);
        expect(s.cpu.usageNs).toBeGreaterThan(0);
        expect(s.cpu.userNs + s.cpu.systemNs).toBeGreaterThan(0);
        expect((await readFile(join(cg, 'cgroup.procs'), 'utf8')).trim()).toBe(String(child.pid));
      } finally {
        const gone = once(child, 'exit');
        child.kill('SIGKILL');
        await gone;
        await rmdir(cg);
      }
    });
  },
);
