import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { writeAtomic } from '../domain/files.js';
import { type CniConfList, confFiles } from './cni-config.js';

/** Name of the conflist berth installs when a conf dir holds none; any other config there is chosen over it. */
export const DEFAULT_CONFLIST = '10-berth.conflist';

/** What the default network looks like; everything but the bridge and name has a sensible default. */
export interface DefaultNetworkOptions {
  /** Network name (also in iptables comments); default "berth". */
  name?: string;
  /** Linux bridge the pods' veths join; default "berth0". */
  bridge?: string;
  /** IPv4 subnet in CIDR; default the first of 10.88.0.0/16, 10.89.0.0/16, ... the host does not route. */
  subnet?: string;
  /** host-local's store of leases; default the plugin's own (/var/lib/cni/networks). */
  dataDir?: string;
}

/** An IPv4 network as (address, prefix length), both numbers. */
interface Net4 {
  addr: number;
  len: number;
}

/** Parses "a.b.c.d/n" into a network, or throws INVALID_ARGUMENT naming `field`. */
export function parseCidr4(cidr: string, field: string): Net4 {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = m ? m.slice(1, 5).map(Number) : [];
  const len = m ? Number(m[5]) : -1;
  if (!m || octets.some((o) => o > 255) || len < 8 || len > 30) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid ${field} "${cidr}": want an IPv4 CIDR with a /8 to /30 prefix`,
    );
  }
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  return { addr: addr - (addr % 2 ** (32 - len)), len };
}

/** True when two networks share an address: equal once masked by the shorter prefix. */
export function overlaps(a: Net4, b: Net4): boolean {
  const len = Math.min(a.len, b.len);
  const size = 2 ** (32 - len);
  return Math.floor(a.addr / size) === Math.floor(b.addr / size);
}

/**
 * The IPv4 destinations the host routes (main table, from /proc/net/route), default routes left
 * out: a pod subnet overlapping one of them would shadow or be shadowed by it.
 */
export async function hostRoutes(file = '/proc/net/route'): Promise<Net4[]> {
  const text = await readFile(file, 'utf8');
  const out: Net4[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    // Little-endian hex, as the kernel prints them.
    const dest = leHex(f[1] ?? '');
    const mask = leHex(f[7] ?? '');
    if (mask === 0) continue;
    const len = 32 - Math.log2(2 ** 32 - mask);
    if (Number.isInteger(len)) out.push({ addr: dest, len });
  }
  return out;
}

function leHex(hex: string): number {
  const n = Number.parseInt(hex, 16);
  return (
    (((n & 0xff) << 24) >>> 0) + ((n >>> 8) & 0xff) * 65536 + ((n >>> 16) & 0xff) * 256 + ((n >>> 24) & 0xff)
  );
}

/** Candidate subnets in order: 10.88.0.0/16 (as containerd and podman) up to 10.127, then 172.16-31. */
function* candidates(): Generator<string> {
  for (let b = 88; b < 128; b++) yield `10.${b}.0.0/16`;
  for (let b = 16; b < 32; b++) yield `172.${b}.0.0/16`;
}

/** The first candidate subnet that overlaps none of the given routes. */
export function pickSubnet(routes: Net4[]): string {
  for (const c of candidates()) {
    const net = parseCidr4(c, 'subnet');
    if (!routes.some((r) => overlaps(r, net))) return c;
  }
  throw new BerthError(
    Code.RESOURCE_EXHAUSTED,
    'every default pod subnet (10.88-127.0.0/16, 172.16-31.0.0/16) overlaps a host route: set services.shim.cniSubnet',
  );
}

/**
 * Member of a conflist that marks it as berth's own default network, with what berth does for it:
 * `masquerade: "subnet"` says berth (not the bridge plugin, whose `ipMasq` is off) masquerades
 * each of the network's subnets with one nat POSTROUTING rule, as Docker does per network, instead
 * of the plugin's chain of rules per container (15 iptables runs, ~50 ms, per ADD and per DEL).
 * Other CNI runtimes reading the same directory ignore the unknown member. It also tells berth the
 * list is its own stand-in, joined only while the conf dir holds no other config (choice.ts).
 */
export const BERTH_MARK = 'berth';

/** The value of the {@link BERTH_MARK} member berth writes. */
export const berthMark = { masquerade: 'subnet' } as const;

/** The default conflist: a bridge with gateway (berth masquerades its subnet), host-local IPAM, and portmap. */
export function defaultConfList(
  opts: Required<Pick<DefaultNetworkOptions, 'name' | 'bridge' | 'subnet'>> & DefaultNetworkOptions,
): CniConfList {
  const ipam: Record<string, unknown> = {
    type: 'host-local',
    ranges: [[{ subnet: opts.subnet }]],
    routes: [{ dst: '0.0.0.0/0' }],
  };
  if (opts.dataDir) ipam.dataDir = opts.dataDir;
  return {
    cniVersion: '1.0.0',
    name: opts.name,
    [BERTH_MARK]: { ...berthMark },
    plugins: [
      { type: 'bridge', bridge: opts.bridge, isGateway: true, ipMasq: false, hairpinMode: true, ipam },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/**
 * The default conflist as berth wrote it before {@link BERTH_MARK}: the bridge plugin masquerading
 * per container. Such a file on disk keeps working as it is (its per-container chains are still
 * cleaned up); this only lets it be recognised as berth's own, e.g. to take a pod CIDR.
 */
export function legacyDefaultConfList(opts: Parameters<typeof defaultConfList>[0]): CniConfList {
  const { [BERTH_MARK]: _mark, ...list } = defaultConfList(opts);
  return { ...list, plugins: list.plugins.map((p) => (p.type === 'bridge' ? { ...p, ipMasq: true } : p)) };
}

/**
 * Installs the default conflist into `confDir` when it holds no configuration at all, written
 * atomically; returns its path, or undefined when a configuration was already there (it is the
 * administrator's, never overwritten).
 */
export async function ensureDefaultNetwork(
  confDir: string,
  opts: DefaultNetworkOptions = {},
): Promise<string | undefined> {
  if ((await confFiles(confDir)).length > 0) return undefined;
  const bridge = opts.bridge ?? 'berth0';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(bridge)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `invalid bridge name "${bridge}": 1-15 of [A-Za-z0-9_.-]`);
  }
  let subnet = opts.subnet;
  if (subnet) parseCidr4(subnet, 'subnet');
  else subnet = pickSubnet(await hostRoutes());
  const conf = defaultConfList({ ...opts, name: opts.name ?? 'berth', bridge, subnet });
  await mkdir(confDir, { recursive: true, mode: 0o755 });
  const path = join(confDir, DEFAULT_CONFLIST);
  await writeAtomic(path, `${JSON.stringify(conf, null, 2)}\n`, 0o644);
  return path;
}
