import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { BerthError, Code } from '@berth/api';
import { Agent, type Dispatcher } from 'undici';
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
    // The files add to the system's CAs (as containerd appends them to the system pool); Node's
    // ca option alone would replace them.
    agent = new Agent({
      connect: {
        rejectUnauthorized: tls.skipVerify !== true,
        ...(ca.length ? { ca: [...rootCertificates, ...ca] } : {}),
      },
    });
    agents.set(key, agent);
  }
  return agent;
}
