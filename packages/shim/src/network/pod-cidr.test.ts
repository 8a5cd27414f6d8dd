import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFLIST, defaultConfList, legacyDefaultConfList } from './default-config.js';
import { applyPodCidr } from './pod-cidr.js';
import { berthMasqRules } from './subnet-masq.js';

// The kubelet's pod CIDR against the conf dirs a node can have: empty, berth's default, berth's
// default edited by hand, and an administrator's own. The bridge named here never exists.

let dir: string;
const opts = { name: 'berth', bridge: 'bpcidrtest0', dataDir: '/var/lib/cni/test-none' };
const subnetOf = async (file: string) =>
  JSON.parse(await readFile(join(dir, file), 'utf8')).plugins[0].ipam.ranges[0][0].subnet as string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pod-cidr-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('applyPodCidr', () => {
  it('installs the default network on the pod CIDR in an empty conf dir (network address, IPv4 first)', async () => {
    const r = await applyPodCidr(dir, opts, ['fd00:10::/64', '10.244.1.7/24'], 0);
    expect(r).toMatchObject({ applied: true, subnet: '10.244.1.0/24' });
    expect(await subnetOf(DEFAULT_CONFLIST)).toBe('10.244.1.0/24');
  });

  it("moves berth's own default network when no pod is attached, and refuses while one is", async () => {
    await applyPodCidr(dir, opts, ['10.244.1.0/24'], 0);
    await expect(applyPodCidr(dir, opts, ['10.244.1.0/24'], 3)).resolves.toMatchObject({ applied: true });
    const busy = await applyPodCidr(dir, opts, ['10.245.0.0/16'], 2).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(BerthError);
    expect((busy as BerthError).code).toBe(Code.FAILED_PRECONDITION);
    expect((busy as BerthError).message).toMatch(/2 pod\(s\) are attached .* on 10\.244\.1\.0\/24/);
    expect(await subnetOf(DEFAULT_CONFLIST)).toBe('10.244.1.0/24');
    const r = await applyPodCidr(dir, opts, ['10.245.0.0/16'], 0);
    expect(r).toMatchObject({ applied: true, subnet: '10.245.0.0/16' });
    expect(await subnetOf(DEFAULT_CONFLIST)).toBe('10.245.0.0/16');
    expect(await readdir(dir)).toEqual([DEFAULT_CONFLIST]);
  });

  it("moves an older berth's default (bridge masquerading per pod) into today's form, berth's mark included", async () => {
    const old = legacyDefaultConfList({ ...opts, subnet: '10.9.0.0/16' });
    expect(berthMasqRules(old)).toEqual([]);
    await writeFile(join(dir, DEFAULT_CONFLIST), JSON.stringify(old));
    await expect(applyPodCidr(dir, opts, ['10.244.1.0/24'], 0)).resolves.toMatchObject({ applied: true });
    const now = JSON.parse(await readFile(join(dir, DEFAULT_CONFLIST), 'utf8'));
    expect(now).toEqual(JSON.parse(JSON.stringify(defaultConfList({ ...opts, subnet: '10.244.1.0/24' }))));
    expect(berthMasqRules(now)).toEqual([
      { network: 'berth', subnet: '10.244.1.0/24', iptables: 'iptables' },
    ]);
  });

  it('masquerades each subnet of a marked list with the iptables of its family', () => {
    const list = defaultConfList({ ...opts, subnet: '10.9.0.0/16' });
    const bridge = list.plugins[0] as unknown as { ipam: { ranges: { subnet: string }[][] } };
    bridge.ipam.ranges.push([{ subnet: 'fd00:9::/64' }]);
    expect(berthMasqRules(list)).toEqual([
      { network: 'berth', subnet: '10.9.0.0/16', iptables: 'iptables' },
      { network: 'berth', subnet: 'fd00:9::/64', iptables: 'ip6tables' },
    ]);
  });

  it("never touches an administrator's configuration, nor berth's default once edited", async () => {
    const admin = JSON.stringify({ cniVersion: '1.0.0', name: 'flannel', plugins: [{ type: 'flannel' }] });
    await writeFile(join(dir, '05-flannel.conflist'), admin);
    await writeFile(
      join(dir, DEFAULT_CONFLIST),
      JSON.stringify(defaultConfList({ ...opts, subnet: '10.9.0.0/16' })),
    );
    const r = await applyPodCidr(dir, opts, ['10.244.1.0/24'], 0);
    expect(r).toMatchObject({ applied: false });
    expect(r.reason).toMatch(/05-flannel\.conflist is not berth's default/);
    expect(await readFile(join(dir, '05-flannel.conflist'), 'utf8')).toBe(admin);
    await rm(join(dir, '05-flannel.conflist'));
    const edited = defaultConfList({ ...opts, subnet: '10.9.0.0/16' });
    (edited.plugins[0] as Record<string, unknown>).mtu = 1400;
    await writeFile(join(dir, DEFAULT_CONFLIST), JSON.stringify(edited));
    await expect(applyPodCidr(dir, opts, ['10.244.1.0/24'], 0)).resolves.toMatchObject({ applied: false });
    expect(await subnetOf(DEFAULT_CONFLIST)).toBe('10.9.0.0/16');
  });

  it("leaves berth's default alone once a cluster's config is there, even one named after it", async () => {
    await applyPodCidr(dir, opts, ['10.244.1.0/24'], 0);
    const cluster = JSON.stringify({ cniVersion: '1.0.0', name: 'calico', plugins: [{ type: 'calico' }] });
    await writeFile(join(dir, '10-calico.conflist'), cluster);
    const r = await applyPodCidr(dir, opts, ['10.245.0.0/16'], 0);
    expect(r).toMatchObject({ applied: false });
    expect(r.reason).toMatch(/10-calico\.conflist is not berth's default/);
    expect(await subnetOf(DEFAULT_CONFLIST)).toBe('10.244.1.0/24');
    expect(await readFile(join(dir, '10-calico.conflist'), 'utf8')).toBe(cluster);
    // A broken cluster config is not berth's either: named, and nothing is rewritten.
    await writeFile(join(dir, '10-calico.conflist'), '{');
    const broken = await applyPodCidr(dir, opts, ['10.245.0.0/16'], 0);
    expect(broken).toMatchObject({ applied: false });
    expect(broken.reason).toMatch(/10-calico\.conflist" is not JSON/);
    expect(await subnetOf(DEFAULT_CONFLIST)).toBe('10.244.1.0/24');
  });

  it('leaves the network as it is without an IPv4 CIDR, and refuses a prefix it cannot use', async () => {
    await expect(applyPodCidr(dir, opts, ['fd00:10::/64'], 0)).resolves.toMatchObject({ applied: false });
    expect(await readdir(dir)).toEqual([]);
    await expect(applyPodCidr(dir, opts, ['10.0.0.0/31'], 0)).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
    });
  });
});
