import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeOverlayMounts } from '../runtime/mounts.js';
import { defaultNetwork, listNetworks } from './choice.js';
import { confFiles, loadConfFile } from './cni-config.js';
import {
  DEFAULT_CONFLIST,
  ensureDefaultNetwork,
  hostRoutes,
  overlaps,
  parseCidr4,
  pickSubnet,
} from './default-config.js';
import { createNetns, isNetnsMounted, removeNetns } from './netns.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-netcfg-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('default subnet', () => {
  it('reads the host routes of /proc/net/route, default routes left out', async () => {
    const file = join(dir, 'route');
    await writeFile(
      file,
      [
        'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
        'eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
        'eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
        'br0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
      ].join('\n'),
    );
    expect(await hostRoutes(file)).toEqual([
      parseCidr4('192.0.2.0/24', 'x'),
      parseCidr4('10.88.0.0/16', 'x'),
    ]);
  });

  it('picks 10.88.0.0/16 unless the host routes into it, then the next free one', () => {
    expect(pickSubnet([parseCidr4('192.0.2.0/24', 'x')])).toBe('10.88.0.0/16');
    expect(pickSubnet([parseCidr4('10.88.3.0/24', 'x')])).toBe('10.89.0.0/16');
    expect(pickSubnet([parseCidr4('10.64.0.0/10', 'x')])).toBe('172.16.0.0/16');
    expect(() => pickSubnet([parseCidr4('10.0.0.0/8', 'x'), parseCidr4('172.16.0.0/12', 'x')])).toThrow(
      'set services.shim.cniSubnet',
    );
  });

  it('parses CIDRs and tells overlaps', () => {
    expect(overlaps(parseCidr4('10.88.0.0/16', 'a'), parseCidr4('10.88.200.0/24', 'b'))).toBe(true);
    expect(overlaps(parseCidr4('10.88.0.0/16', 'a'), parseCidr4('10.89.0.0/16', 'b'))).toBe(false);
    expect(() => parseCidr4('10.88.0.0', 'cniSubnet')).toThrow('invalid cniSubnet "10.88.0.0"');
    expect(() => parseCidr4('300.1.1.1/8', 'cniSubnet')).toThrow('invalid cniSubnet');
  });
});

describe('conf dir', () => {
  it('installs the default conflist once, on a subnet the host does not route, and never over a present config', async () => {
    const confDir = join(dir, 'net.d');
    const path = await ensureDefaultNetwork(confDir, { bridge: 'berthtest0' });
    expect(path).toBe(join(confDir, DEFAULT_CONFLIST));
    expect((await stat(path as string)).mode & 0o777).toBe(0o644);
    const net = await defaultNetwork(confDir);
    expect(net?.conf.plugins.map((p) => p.type)).toEqual(['bridge', 'portmap']);
    const subnet =
      (net?.conf.plugins[0]?.ipam as { ranges?: { subnet: string }[][] } | undefined)?.ranges?.[0]?.[0]
        ?.subnet ?? '';
    const mine = parseCidr4(subnet, 'subnet');
    for (const r of await hostRoutes()) expect(overlaps(r, mine)).toBe(false);
    const before = await readFile(path as string, 'utf8');
    expect(await ensureDefaultNetwork(confDir, { bridge: 'other0', subnet: '10.99.0.0/16' })).toBeUndefined();
    expect(await readFile(path as string, 'utf8')).toBe(before);
    await expect(ensureDefaultNetwork(join(dir, 'e'), { bridge: 'a-name-far-too-long' })).rejects.toThrow(
      'invalid bridge name "a-name-far-too-long"',
    );
  });

  it('orders files by name like libcni, reads .conf single plugins as one-plugin lists', async () => {
    const confDir = join(dir, 'order');
    await ensureDefaultNetwork(confDir, { subnet: '10.99.0.0/16' });
    await writeFile(
      join(confDir, '05-single.conf'),
      JSON.stringify({ cniVersion: '0.4.0', name: 'single', type: 'bridge', bridge: 'x0' }),
    );
    await writeFile(join(confDir, '01-ignored.txt'), 'not a conf');
    expect(await confFiles(confDir)).toEqual([
      join(confDir, '05-single.conf'),
      join(confDir, DEFAULT_CONFLIST),
    ]);
    const single = await loadConfFile(join(confDir, '05-single.conf'));
    expect(single.conf).toEqual({
      cniVersion: '0.4.0',
      name: 'single',
      plugins: [{ type: 'bridge', bridge: 'x0' }],
    });
    expect((await defaultNetwork(confDir))?.conf.name).toBe('single');
    expect(await defaultNetwork(join(dir, 'missing'))).toBeUndefined();
  });
});

describe("berth's default beside another config", () => {
  const bridgeList = (name: string, extra: Record<string, unknown> = {}) => ({
    cniVersion: '1.0.0',
    name,
    ...extra,
    plugins: [{ type: 'bridge', bridge: `${name}0`, ipam: { type: 'host-local', subnet: '10.99.7.0/24' } }],
  });

  it('is joined only while no other config is there, whatever the names; ls marks the one chosen', async () => {
    const confDir = join(dir, 'cluster');
    await ensureDefaultNetwork(confDir, { subnet: '10.99.0.0/16' });
    expect((await defaultNetwork(confDir))?.conf.name).toBe('berth');
    // Sorts after 10-berth.conflist, as 10-calico, 10-flannel and 10-kindnet do.
    await writeFile(join(confDir, '10-cluster.conflist'), JSON.stringify(bridgeList('cluster')));
    await writeFile(join(confDir, '99-extra.conflist'), JSON.stringify(bridgeList('extra')));
    expect((await defaultNetwork(confDir))?.file).toBe(join(confDir, '10-cluster.conflist'));
    const ls = await listNetworks(confDir);
    expect(ls.map((n) => [n.name, n.default])).toEqual([
      ['berth', false],
      ['cluster', true],
      ['extra', false],
    ]);
    expect(ls[1]?.subnets).toEqual(['10.99.7.0/24']);
    // A broken cluster config is an error naming it, not a silent fall back to berth's default.
    await writeFile(join(confDir, '10-cluster.conflist'), '{"cniVersion":');
    await expect(defaultNetwork(confDir)).rejects.toThrow(
      `CNI config "${join(confDir, '10-cluster.conflist')}"`,
    );
    expect((await listNetworks(confDir)).find((n) => n.default)?.error).toMatch(/is not JSON/);
    await rm(join(confDir, '10-cluster.conflist'));
    await rm(join(confDir, '99-extra.conflist'));
    expect((await defaultNetwork(confDir))?.conf.name).toBe('berth');
    expect((await listNetworks(confDir)).map((n) => n.default)).toEqual([true]);
  });

  it("knows berth's own by its mark under any name, and an older berth's by its name", async () => {
    const confDir = join(dir, 'marks');
    await mkdir(confDir);
    // An older berth's default: no mark, known by its name.
    await writeFile(join(confDir, DEFAULT_CONFLIST), JSON.stringify(bridgeList('old')));
    await writeFile(
      join(confDir, '00-renamed.conflist'),
      JSON.stringify(bridgeList('renamed', { berth: {} })),
    );
    expect((await defaultNetwork(confDir))?.conf.name).toBe('renamed');
    const single = { cniVersion: '1.0.0', name: 'cluster', type: 'bridge', bridge: 'cl0' };
    await writeFile(join(confDir, '50-cluster.conf'), JSON.stringify(single));
    expect((await defaultNetwork(confDir))?.conf.name).toBe('cluster');
  });
});

describe('pinned network namespaces', () => {
  it('outlive the process that made them; create and remove are idempotent', async () => {
    const path = join(dir, 'ns1');
    await createNetns(path);
    // unshare has exited: only the bind mount keeps the namespace.
    expect(await isNetnsMounted(path)).toBe(true);
    await createNetns(path);
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((l) => l.includes(` ${path} `));
    expect(mounts).toHaveLength(1);
    await removeNetns(path);
    expect(await isNetnsMounted(path)).toBe(false);
    await expect(stat(path)).rejects.toThrow('ENOENT');
    await removeNetns(path);
  });

  it('are unmounted through the addon, twice-mounted ones included, without umount(8)', async () => {
    const path = join(dir, 'ns-twice');
    await createNetns(path);
    // A second namespace mounted over the first, as two racing creates would leave it.
    execFileSync('mount', ['--bind', '/proc/self/ns/net', path]);
    const tools = { unshare: '/usr/bin/unshare', umount: join(dir, 'no-such-umount') };
    await removeNetns(path, tools);
    expect(await isNetnsMounted(path)).toBe(false);
    await expect(stat(path)).rejects.toThrow('ENOENT');
  });

  it('isNetnsMounted: true for a pinned namespace only, not its empty file or a missing path', async () => {
    const path = join(dir, 'ns-check');
    await writeFile(path, '');
    expect(await isNetnsMounted(path)).toBe(false);
    expect(await isNetnsMounted(join(dir, 'ns-missing'))).toBe(false);
    expect(await isNetnsMounted(join(path, 'below-a-file'))).toBe(false);
    await createNetns(path);
    expect(await isNetnsMounted(path)).toBe(true);
    await removeNetns(path);
    expect(await isNetnsMounted(path)).toBe(false);
  });

  it('are made in a thread of the addon: a new namespace with only lo, no thread of this process moved', async () => {
    expect(nativeOverlayMounts()).toBe(true);
    const path = join(dir, 'ns-native');
    await createNetns(path);
    const own = await readlink('/proc/self/ns/net');
    const pinned = execFileSync('nsenter', [`--net=${path}`, 'readlink', '/proc/self/ns/net'], {
      encoding: 'utf8',
    }).trim();
    expect(pinned).toMatch(/^net:\[\d+\]$/);
    expect(pinned).not.toBe(own);
    const links = execFileSync('nsenter', [`--net=${path}`, 'ip', '-o', 'link'], { encoding: 'utf8' });
    // Up already (the addon does what the CNI loopback plugin's ADD would).
    expect(links).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    expect(
      links
        .trim()
        .split('\n')
        .map((l) => l.split(':')[1]?.trim()),
    ).toEqual(['lo']);
    for (const tid of await readdir('/proc/self/task')) {
      expect(await readlink(`/proc/self/task/${tid}/ns/net`)).toBe(own);
    }
    await removeNetns(path);
    expect(await isNetnsMounted(path)).toBe(false);
  });
});
