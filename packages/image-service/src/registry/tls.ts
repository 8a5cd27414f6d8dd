import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { BerthError, Code } from '@berth/api';
import type { Agent, Dispatcher } from 'undici';
import type { ResolvedHost } from './hosts-toml.js';

export type { Dispatcher };

/**
 * One connection pool per endpoint TLS setting (skip_verify, the CA files' contents), shared by
 * every pull: an Agent per request would leave its idle sockets behind on each pull.
 */
const agents = new Map<string, Agent>();

/**
 * The fetch dispatcher honouring an endpoint's hosts.toml `skip_verify` and `ca`; undefined for an
 * endpoint without TLS settings (Node's default: the system CAs, verified). A CA file that cannot
 * be read fails with FAILED_PRECONDITION naming it and the hosts.toml.
 */
export async function dispatcherFor(host: ResolvedHost, base: string): Promise<Dispatcher | undefined> {
  const tls = host.tls?.[base];
  if (!tls) return undefined;
  const ca: string[] = [];
  for (const file of tls.caFiles ?? []) {
    try {
      ca.push(await readFile(file, 'utf8'));
    } catch (err) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `${host.file ?? 'hosts.toml'}: ca ${file} for ${base} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        { cause: err },
      );
    }
  }
  const key = createHash('sha256')
    .update(JSON.stringify([base, tls.skipVerify === true, ca]))
    .digest('hex');
  let agent = agents.get(key);
  if (!agent) {
    // Loaded on the first endpoint with TLS settings: the undici package is ~2 MB of heap that a
    // service pulling from registries without them would keep for nothing.
    const { Agent } = await import('undici');
    // The files add to the system's CAs (as containerd appends them to the system pool); Node's
    // ca option alone would replace them. Looked up again after the await: a concurrent pull may
    // have made this endpoint's pool meanwhile.
    const connect = {
      rejectUnauthorized: tls.skipVerify !== true,
      ...(ca.length ? { ca: [...rootCertificates, ...ca] } : {}),
    };
    agent = agents.get(key) ?? new Agent({ connect });
    agents.set(key, agent);
  }
  return agent;
}
