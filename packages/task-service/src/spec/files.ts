import type { DnsConfig } from '@berth/api';

/** /etc/hosts of a container with its own network namespace. */
export function hostsFile(hostname: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    `127.0.1.1\t${hostname}`,
    '',
  ].join('\n');
}

/** /etc/resolv.conf from explicit DNS settings. */
export function resolvConf(dns: DnsConfig): string {
  const lines = dns.servers.map((s) => `nameserver ${s}`);
  if (dns.searches.length) lines.push(`search ${dns.searches.join(' ')}`);
  if (dns.options.length) lines.push(`options ${dns.options.join(' ')}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/**
 * The host's resolv.conf made usable in a separate network namespace: loopback nameservers (a
 * local resolver on the host) are unreachable there, so they are dropped, as docker does.
 */
export function filterHostResolvConf(text: string, keepLoopback: boolean): string {
  if (keepLoopback) return text;
  return text
    .split('\n')
    .filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l))
    .join('\n');
}
