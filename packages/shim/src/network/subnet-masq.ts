import { isIP } from 'node:net';
import { BerthError, Code } from '@berth/api';
import { lastLine, runCommand } from '../runtime/command.js';
import { type CniConfList, subnetsOf } from './cni-config.js';
import { BERTH_MARK, berthMark } from './default-config.js';

/** One masquerade rule berth keeps for a network: the subnet and the iptables binary of its family. */
export interface SubnetRule {
  network: string;
  subnet: string;
  iptables: 'iptables' | 'ip6tables';
}

/**
 * The subnets berth masquerades itself for a list: those of its IPAM ranges when the list carries
 * berth's mark (the default network berth installs), none for any other list (a user's own
 * configuration is left to its plugins).
 */
export function berthMasqRules(list: CniConfList): SubnetRule[] {
  const mark = (list as Record<string, unknown>)[BERTH_MARK] as { masquerade?: unknown } | undefined;
  if (mark?.masquerade !== berthMark.masquerade) return [];
  const rules: SubnetRule[] = [];
  for (const subnet of new Set(list.plugins.flatMap(subnetsOf))) {
    const family = isIP(subnet.split('/')[0] ?? '');
    if (family === 0) {
      throw new BerthError(Code.INVALID_ARGUMENT, `network "${list.name}": invalid subnet "${subnet}"`);
    }
    rules.push({ network: list.name, subnet, iptables: family === 6 ? 'ip6tables' : 'iptables' });
  }
  return rules;
}

/**
 * The rule's arguments after the command (-C, -A or -D): traffic from the subnet to anywhere
 * outside it leaves with the host's address; traffic between pods keeps theirs.
 */
function ruleArgs(rule: SubnetRule): string[] {
  return [
    'POSTROUTING',
    '-s',
    rule.subnet,
    '!',
    '-d',
    rule.subnet,
    '-m',
    'comment',
    '--comment',
    `berth network ${rule.network}`,
    '-j',
    'MASQUERADE',
  ];
}

/** Adds the rule unless it is there (checked with -C first, so it exists once). */
export async function ensureSubnetRule(rule: SubnetRule): Promise<void> {
  const nat = ['-w', '-t', 'nat'];
  if ((await runCommand(rule.iptables, [...nat, '-C', ...ruleArgs(rule)])).code === 0) return;
  const add = await runCommand(rule.iptables, [...nat, '-A', ...ruleArgs(rule)]);
  if (add.code !== 0) {
    throw new BerthError(
      Code.INTERNAL,
      `cannot add the masquerade rule of network "${rule.network}" (${rule.subnet}): ${lastLine(add.stderr)}`,
    );
  }
}

/** Deletes the rule (every copy of it); absent is not an error. */
export async function removeSubnetRule(rule: SubnetRule): Promise<void> {
  const nat = ['-w', '-t', 'nat'];
  while ((await runCommand(rule.iptables, [...nat, '-C', ...ruleArgs(rule)])).code === 0) {
    const del = await runCommand(rule.iptables, [...nat, '-D', ...ruleArgs(rule)]);
    if (del.code !== 0) {
      throw new BerthError(
        Code.INTERNAL,
        `cannot delete the masquerade rule of network "${rule.network}" (${rule.subnet}): ${lastLine(del.stderr)}`,
      );
    }
  }
}

/**
 * Ensures each network's rules once per process: the first setup on a network runs the -C (and
 * -A), later ones wait on that same promise, so pods set up at once cannot add it twice. A failure
 * is forgotten, so the next setup tries again.
 */
export class SubnetMasquerade {
  private readonly done = new Map<string, Promise<void>>();

  /** Ensures the rules of a list (none unless it carries berth's mark). */
  async ensure(list: CniConfList): Promise<void> {
    for (const rule of berthMasqRules(list)) {
      const key = `${rule.iptables} ${rule.network} ${rule.subnet}`;
      let p = this.done.get(key);
      if (!p) {
        p = ensureSubnetRule(rule);
        this.done.set(key, p);
        p.catch(() => this.done.delete(key));
      }
      await p;
    }
  }

  /** Forgets what was ensured (the conflist changed), so the next setup checks again. */
  forget(): void {
    this.done.clear();
  }
}
