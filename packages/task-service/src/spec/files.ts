import type { DnsConfig } from '@berth/api';

/** /etc/resolv.conf from explicit DNS settings. */
export function resolvConf(dns: DnsConfig): string {
  const lines = dns.servers.map((s) => `nameserver ${s}`);
  if (dns.searches.length) lines.push(`search ${dns.searches.join(' ')}`);
  if (dns.options.length) lines.push(`options ${dns.options.join(' ')}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}
