import { basename } from 'node:path';
import { type CniNetwork, confFiles, loadConfFile, subnetsOf } from './cni-config.js';
import { BERTH_MARK, DEFAULT_CONFLIST } from './default-config.js';

/** One configuration file of a conf dir: its network, or why it could not be read. */
interface ConfEntry {
  file: string;
  net?: CniNetwork;
  error?: Error;
  /** berth's own default network (see isBerthDefault). */
  own: boolean;
}

/**
 * True for a file of berth's own default network: one carrying berth's mark ({@link BERTH_MARK}),
 * or named {@link DEFAULT_CONFLIST} (an older berth wrote it without the mark).
 */
export function isBerthDefault(file: string, net?: CniNetwork): boolean {
  return basename(file) === DEFAULT_CONFLIST || (net !== undefined && BERTH_MARK in net.conf);
}

/** Every configuration file of a directory in libcni's order, each read (a broken one with its error). */
async function readConfDir(confDir: string): Promise<ConfEntry[]> {
  const out: ConfEntry[] = [];
  for (const file of await confFiles(confDir)) {
    try {
      const net = await loadConfFile(file);
      out.push({ file, net, own: isBerthDefault(file, net) });
    } catch (err) {
      out.push({ file, error: err as Error, own: isBerthDefault(file) });
    }
  }
  return out;
}

/**
 * Index of the network pods join: the first file by name that is not berth's own default, else
 * berth's own; -1 for none. berth's default is a stand-in for a node without a network of its
 * own: a cluster's CNI (Calico, flannel, kindnet ...) installing its config replaces it whatever
 * the names, as containerd never lets a config of its own shadow the cluster's.
 */
function chosen(entries: ConfEntry[]): number {
  const other = entries.findIndex((e) => !e.own);
  return other >= 0 ? other : entries.findIndex((e) => e.own);
}

/**
 * The network pods join (see chosen), read afresh from the directory on every call, so a config
 * that appears is used from the next pod on. A broken chosen file is an error naming it, not
 * silently skipped, so a typo does not move every pod to another network. Undefined when the
 * directory holds no configuration.
 */
export async function defaultNetwork(confDir: string): Promise<CniNetwork | undefined> {
  const entries = await readConfDir(confDir);
  const entry = entries[chosen(entries)];
  if (entry?.error) throw entry.error;
  return entry?.net;
}

/** One row of `berth network ls`: a network, its plugin chain, its subnets and its file. */
export interface NetworkInfo {
  name: string;
  cniVersion: string;
  plugins: string[];
  /** Subnets of the host-local IPAM ranges (or `subnet`) of its plugins, if any. */
  subnets: string[];
  file: string;
  /** True for the network pods join (see defaultNetwork). */
  default: boolean;
  /** Set instead of the fields above' content when the file could not be read. */
  error?: string;
}

/** Lists every network configuration of a directory; a broken file is listed with its error. */
export async function listNetworks(confDir: string): Promise<NetworkInfo[]> {
  const entries = await readConfDir(confDir);
  const pick = chosen(entries);
  return entries.map(({ file, net, error }, i) => ({
    name: net?.conf.name ?? '',
    cniVersion: net?.conf.cniVersion ?? '',
    plugins: net?.conf.plugins.map((p) => p.type) ?? [],
    subnets: net?.conf.plugins.flatMap(subnetsOf) ?? [],
    file,
    default: i === pick,
    ...(error ? { error: error.message } : {}),
  }));
}
