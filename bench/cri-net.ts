/**
 * The pod networks of the CRI benchmark: one CNI conflist per runtime in a private conf dir, the
 * same plugin chain for both (bridge with gateway, host-local, portmap), each on its own bridge
 * and a /16 the host does not route, with private host-local leases. Each runtime masquerades as
 * its default network does: containerd's through the bridge plugin (a chain per pod), berth's
 * with one rule for the subnet that its shim keeps (berth's mark in the conflist). Removes the
 * bridges and the subnet rule it made when done.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BERTH_MARK, berthMark, berthMasqRules, type CniConfList, removeSubnetRule } from '@berth/shim';

/** One private pod network. */
export interface BenchNetwork {
  /** The conf dir holding its one conflist. */
  confDir: string;
  bridge: string;
  subnet: string;
  /** host-local's lease store. */
  dataDir: string;
  /** The conflist written. */
  conf: CniConfList;
}

/** IPv4 destinations (network, prefix) the host routes now, default routes left out. */
function routed(): [number, number][] {
  const le = (hex: string) => {
    const n = Number.parseInt(hex, 16);
    return (((n & 0xff) << 24) >>> 0) + ((n >>> 8) & 0xff) * 65536 + ((n >>> 16) & 0xff) * 256 + (n >>> 24);
  };
  const out: [number, number][] = [];
  for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const mask = le(f[7] ?? '0');
    if (mask === 0) continue;
    out.push([le(f[1] ?? '0'), 32 - Math.log2(2 ** 32 - mask)]);
  }
  return out;
}

/**
 * `count` distinct 10.x.0.0/16 subnets that overlap no host route, from 10.200 upwards (away from
 * 10.88, where berth's and containerd's default networks live).
 */
export function freeSubnets(count: number): string[] {
  const routes = routed();
  const out: string[] = [];
  for (let b = 200; b < 255 && out.length < count; b++) {
    const net = (10 * 256 + b) * 65536;
    const clash = routes.some(([addr, len]) => {
      const size = 2 ** (32 - Math.min(len, 16));
      return Math.floor(addr / size) === Math.floor(net / size);
    });
    if (!clash) out.push(`10.${b}.0.0/16`);
  }
  if (out.length < count) throw new Error('no free 10.200-254.0.0/16 subnet for the benchmark networks');
  return out;
}

/** Writes the conflist of a network named `name` under `dir` and returns it. */
export async function makeNetwork(
  dir: string,
  name: string,
  bridge: string,
  subnet: string,
  masquerade: 'per-pod' | 'berth-subnet',
): Promise<BenchNetwork> {
  const dataDir = join(dir, 'cni-leases');
  const conf = {
    cniVersion: '1.0.0',
    name,
    ...(masquerade === 'berth-subnet' ? { [BERTH_MARK]: { ...berthMark } } : {}),
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: masquerade === 'per-pod',
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  } as CniConfList;
  const net: BenchNetwork = { confDir: join(dir, 'net.d'), bridge, subnet, dataDir, conf };
  await mkdir(net.confDir, { recursive: true });
  await writeFile(join(net.confDir, `10-${name}.conflist`), `${JSON.stringify(conf, null, 2)}\n`);
  return net;
}

/** True when a network interface of this name exists. */
export function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' }).status === 0;
}

/**
 * Deletes the bridge of a network (the bridge plugin leaves it behind when the last pod goes) and
 * the subnet rule berth's shim keeps for it (none for a network masqueraded per pod).
 */
export async function removeNetwork(net: BenchNetwork): Promise<void> {
  if (linkExists(net.bridge)) spawnSync('ip', ['link', 'del', 'dev', net.bridge], { stdio: 'ignore' });
  for (const rule of berthMasqRules(net.conf)) await removeSubnetRule(rule);
}
