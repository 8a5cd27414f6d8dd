// `berth config acl`: the per-principal users of external NATS and Redis servers, printed as the
// servers' configuration and the berth settings that give each service and the CLI its login.
// The same generator writes the embedded servers' configuration under `berth up`.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { BerthError, Code, NODE_ID_PATTERN } from '@berth/api';
import {
  type AclSecrets,
  natsAuthorization,
  principalLogins,
  redisUsers,
  withLogin,
} from '@berth/kit/acl-config';
import { DEFAULT_NATS_URL, DEFAULT_REDIS_URL } from '@berth/kit/config';
import { derivePassword } from '@berth/kit/permissions';
import * as z from 'zod';
import type { CommandArgs } from '../command.js';
import type { CliContext } from '../context.js';
import { createOnce } from './credentials.js';

const Secrets = z.object({ nats: z.string().min(32), redis: z.string().min(32) });

function freshSecrets(): AclSecrets {
  return { nats: randomBytes(32).toString('base64url'), redis: randomBytes(32).toString('base64url') };
}

/**
 * The master secrets: read from `file` when it exists, else generated (and, with a file, saved
 * there 0600 without ever overwriting one), so printing the config again gives the same passwords.
 */
export function aclSecrets(file: string | undefined): AclSecrets {
  if (!file) return freshSecrets();
  if (existsSync(file)) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `--secrets ${file} is not valid JSON: ${(err as Error).message}`,
      );
    }
    const parsed = Secrets.safeParse(raw);
    if (!parsed.success) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `--secrets ${file} must hold {"nats": SECRET, "redis": SECRET} with secrets of 32 characters or more`,
      );
    }
    return parsed.data;
  }
  return createOnce(file, freshSecrets(), aclSecrets);
}

/** A server URL list without the credentials a configured URL may carry. */
function bare(url: string): string {
  return url
    .split(',')
    .map((u) => u.trim().replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)?[^/?#@]*@/, '$1'))
    .join(',');
}

/** The text `berth config acl` prints: the nats-server block, the redis users, berth's settings. */
export function aclConfigText(opts: {
  node: string;
  natsUrl: string;
  redisUrl: string;
  secrets: AclSecrets;
  /** An administrator user to add (no limits; the services answer it), e.g. the operator's. */
  admin?: string;
}): string {
  if (!NODE_ID_PATTERN.test(opts.node)) {
    throw new BerthError(Code.INVALID_ARGUMENT, `--node "${opts.node}": a node id is 1-64 of [a-zA-Z0-9_-]`);
  }
  if (!/^rediss?:\/\//.test(opts.redisUrl)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `--redis-url "${bare(opts.redisUrl)}": per-service users need a redis:// or rediss:// URL`,
    );
  }
  const services: Record<string, { natsUrl: string; redisUrl?: string }> = {};
  for (const l of principalLogins(opts.node, opts.secrets)) {
    services[l.principal] = {
      natsUrl: withLogin(bare(opts.natsUrl), l.user, l.natsPassword),
      ...(l.redisPassword ? { redisUrl: withLogin(bare(opts.redisUrl), l.user, l.redisPassword) } : {}),
    };
  }
  const admin = opts.admin
    ? { user: opts.admin, password: derivePassword(opts.secrets.nats, 'nats', opts.admin) }
    : undefined;
  const adminLine = admin
    ? `# administrator (no limits): ${withLogin(bare(opts.natsUrl), admin.user, admin.password)}\n`
    : '';
  return (
    `# nats-server: one user per berth service and the CLI on node ${opts.node}, each limited to the\n` +
    '# subjects its role needs. Put this block in the server configuration in place of a single\n' +
    '# user, then reload the server. The services answer only these users (and --admin).\n' +
    adminLine +
    natsAuthorization(opts.node, opts.secrets, admin) +
    '\n# redis-server: ACL users limited to the key families each service owns. Add these lines to\n' +
    '# redis.conf (or the file its aclfile names) and restart or run ACL LOAD; the default user\n' +
    '# stays the administrator.\n' +
    redisUsers(opts.node, opts.secrets) +
    '\n# berth config file (/etc/berth/config.json) on this node: merge into "services", so each\n' +
    '# service and the CLI logs in as itself.\n' +
    `${JSON.stringify({ services }, null, 2)}\n`
  );
}

/** `berth config acl [--node NODE] [--nats-url URL] [--redis-url URL] [--secrets FILE] [--admin USER]`. */
export async function configAcl(args: CommandArgs, ctx: CliContext): Promise<number> {
  const v = args.values;
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  ctx.out.write(
    aclConfigText({
      node: str('node') ?? ctx.config.nodeId,
      natsUrl: str('nats-url') ?? ctx.config.natsUrl ?? DEFAULT_NATS_URL,
      redisUrl: str('redis-url') ?? ctx.config.redisUrl ?? DEFAULT_REDIS_URL,
      secrets: aclSecrets(str('secrets')),
      ...(str('admin') ? { admin: str('admin') as string } : {}),
    }),
  );
  return 0;
}
