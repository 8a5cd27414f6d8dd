import { createHash } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import { lastLine, runCommand } from '../runtime/command.js';
import type { CniConfList } from './cni-config.js';

/**
 * The bridge plugin finds a pod's masquerade rules through the pod's addresses, which it reads
 * from the interface inside the namespace; on a DEL whose namespace or interface is gone it
 * releases the lease but leaves the rules (and their chain) behind. This removes them the way the plugin names them: the chain is
 * "CNI-" + the first 24 hex digits of sha512(network name + container id), jumped to from
 * POSTROUTING in the nat table.
 */
export function masqChainName(network: string, containerId: string): string {
  return `CNI-${createHash('sha512')
    .update(network + containerId)
    .digest('hex')
    .slice(0, 24)}`;
}

/** True when the list has a bridge plugin that masquerades (so it made such a chain). */
export function masquerades(list: CniConfList): boolean {
  return list.plugins.some((p) => p.type === 'bridge' && p.ipMasq === true);
}

/** Splits one `iptables -S` line into arguments (double quotes with backslash escapes). */
export function splitRule(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let any = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quoted && c === '\\' && i + 1 < line.length) {
      cur += line[++i];
    } else if (c === '"') {
      quoted = !quoted;
      any = true;
    } else if (c === ' ' && !quoted) {
      if (cur || any) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += c;
    }
  }
  if (cur || any) out.push(cur);
  return out;
}

/**
 * Deletes a pod's masquerade rules from POSTROUTING and its chain, with the given iptables binary
 * (`iptables`, or `ip6tables` for IPv6 pods). Nothing to delete is not an error.
 */
export async function removeMasquerade(
  network: string,
  containerId: string,
  iptables = 'iptables',
): Promise<void> {
  const chain = masqChainName(network, containerId);
  // A rule cannot jump to a chain that does not exist: with the chain gone (the plugin's DEL did
  // its job, the usual case) there is nothing to delete, found with one command instead of four.
  if ((await runCommand(iptables, ['-w', '-t', 'nat', '-S', chain])).code !== 0) return;
  const listed = await runCommand(iptables, ['-w', '-t', 'nat', '-S', 'POSTROUTING']);
  if (listed.code !== 0) {
    throw new BerthError(
      Code.INTERNAL,
      `${iptables} -t nat -S POSTROUTING failed: ${lastLine(listed.stderr)}`,
    );
  }
  for (const line of listed.stdout.split('\n')) {
    const args = splitRule(line);
    if (args[0] !== '-A' || args[args.indexOf('-j') + 1] !== chain) continue;
    const del = await runCommand(iptables, ['-w', '-t', 'nat', '-D', ...args.slice(1)]);
    if (del.code !== 0) {
      throw new BerthError(
        Code.INTERNAL,
        `cannot delete the masquerade rule of "${containerId}": ${lastLine(del.stderr)}`,
      );
    }
  }
  // Absent chains make -F/-X fail; only a chain still there after -X is a problem.
  await runCommand(iptables, ['-w', '-t', 'nat', '-F', chain]);
  await runCommand(iptables, ['-w', '-t', 'nat', '-X', chain]);
  const still = await runCommand(iptables, ['-w', '-t', 'nat', '-S', chain]);
  if (still.code === 0) {
    throw new BerthError(
      Code.INTERNAL,
      `cannot delete masquerade chain ${chain} of "${containerId}": it is still there`,
    );
  }
}
