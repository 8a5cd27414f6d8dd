import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { basename } from 'node:path';
import { isDeepStrictEqual, promisify } from 'node:util';
import { BerthError, Code } from '@berth/api';
import { writeAtomic } from '../domain/files.js';
import { defaultNetwork } from './choice.js';
import { confFiles } from './cni-config.js';
import {
  DEFAULT_CONFLIST,
  type DefaultNetworkOptions,
  defaultConfList,
  ensureDefaultNetwork,
  legacyDefaultConfList,
  parseCidr4,
} from './default-config.js';

const exec = promisify(execFile);

/** What became of the kubelet's pod CIDR: the subnet pods now get, or why the CNI config was kept. */
export interface PodCidrOutcome {
  applied: boolean;
  subnet?: string;
  reason: string;
}

/** The subnet of berth's default conflist at `path`, or undefined when the file is not exactly one berth wrote. */
async function ownSubnet(path: string, opts: DefaultNetworkOptions): Promise<string | undefined> {
  let conf: unknown;
  try {
    conf = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
  const bridge = (conf as { plugins?: { ipam?: { ranges?: { subnet?: unknown }[][] } }[] }).plugins?.[0];
  const subnet = bridge?.ipam?.ranges?.[0]?.[0]?.subnet;
  if (typeof subnet !== 'string') return undefined;
  const shape = { ...opts, name: opts.name ?? 'berth', bridge: opts.bridge ?? 'berth0', subnet };
  // An older berth's default (bridge masquerading per container) is berth's too: it takes the
  // pod CIDR, rewritten in today's form.
  const mine = [defaultConfList(shape), legacyDefaultConfList(shape)];
  return mine.some((m) => isDeepStrictEqual(conf, JSON.parse(JSON.stringify(m)))) ? subnet : undefined;
}

/**
 * Gives berth's default pod network the kubelet's pod CIDR (CRI UpdateRuntimeConfig), as
 * containerd fills its CNI config template: the first IPv4 CIDR becomes the host-local range of
 * the default conflist, written now when the conf dir is empty or rewritten when the network pods
 * join is exactly the conflist berth installed. A configuration of the administrator's (any other
 * file, or ours edited) is never touched: the pod CIDR is then theirs to use. A change while pods
 * are attached is refused (their addresses and the bridge's gateway address belong to the old
 * range); with none attached, the bridge is deleted so the next pod recreates it with the new gateway address.
 */
export async function applyPodCidr(
  confDir: string,
  opts: DefaultNetworkOptions,
  cidrs: string[],
  attached: number,
): Promise<PodCidrOutcome> {
  const v4 = cidrs.find((c) => isIP(c.split('/')[0] ?? '') === 4);
  if (!v4) return { applied: false, reason: "no IPv4 pod CIDR: berth's default network is IPv4 only" };
  const net = parseCidr4(v4, 'pod CIDR');
  const subnet = `${[24, 16, 8, 0].map((s) => (net.addr >>> s) & 255).join('.')}/${net.len}`;
  const files = await confFiles(confDir);
  if (files.length === 0) {
    await ensureDefaultNetwork(confDir, { ...opts, subnet });
    return { applied: true, subnet, reason: `installed ${DEFAULT_CONFLIST} with the pod CIDR` };
  }
  // The network pods join: beside a cluster's config berth's default is unused, and the pod CIDR
  // is then the cluster CNI's to use.
  let first: string;
  try {
    first = (await defaultNetwork(confDir))?.file ?? '';
  } catch (err) {
    return { applied: false, reason: `${(err as Error).message}: it is left as it is` };
  }
  const current = basename(first) === DEFAULT_CONFLIST ? await ownSubnet(first, opts) : undefined;
  if (current === undefined) {
    return {
      applied: false,
      reason: `the CNI configuration ${first} is not berth's default: it is left as it is`,
    };
  }
  if (current === subnet) return { applied: true, subnet, reason: 'the default network already uses it' };
  if (attached > 0) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `pod CIDR ${subnet}: ${attached} pod(s) are attached to the default network on ${current}; ` +
        'remove them first, the range of a network in use cannot change',
    );
  }
  const conf = defaultConfList({
    ...opts,
    name: opts.name ?? 'berth',
    bridge: opts.bridge ?? 'berth0',
    subnet,
  });
  await writeAtomic(first, `${JSON.stringify(conf, null, 2)}\n`, 0o644);
  await exec('ip', ['link', 'del', opts.bridge ?? 'berth0']).catch(() => undefined); // absent: nothing to do
  return { applied: true, subnet, reason: `the default network moved from ${current}` };
}
