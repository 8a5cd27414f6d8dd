/**
 * The pod networks of the CRI benchmark: one CNI conflist per runtime in a private conf dir, the
 * same plugin chain for both (bridge with gateway and masquerade, host-local, portmap, as berth's
 * default network), each on its own bridge and a /16 the host does not route, with private
 * host-local leases. Removes the bridges it made when done.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** One private pod network. */
export interface BenchNetwork {
  /** The conf dir holding its one conflist. */
  confDir: string;
  bridge: string;
  subnet: string;
  /** host-local's lease store. */
  dataDir: string;
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
): Promise<BenchNetwork> {
  const net: BenchNetwork = {
    confDir: join(dir, 'net.d'),
    bridge,
    subnet,
    dataDir: join(dir, 'cni-leases'),
  };
  const conf = {
    cniVersion: '1.0.0',
    name,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: net.dataDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
  await mkdir(net.confDir, { recursive: true });
  await writeFile(join(net.confDir, `10-${name}.conflist`), `${JSON.stringify(conf, null, 2)}\n`);
  return net;
}

/** True when a network interface of this name exists. */
export function linkExists(name: string): boolean {
  return spawnSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore' }).status === 0;
}

/** Deletes the bridge of a network (the bridge plugin leaves it behind when the last pod goes). */
export function removeBridge(net: BenchNetwork): void {
  if (linkExists(net.bridge)) spawnSync('ip', ['link', 'del', 'dev', net.bridge], { stdio: 'ignore' });
}
