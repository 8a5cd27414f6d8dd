// Server-side configuration of the per-principal users: the nats-server `authorization` block and
// the redis-server `user` lines, as `berth up` writes them for its embedded servers and
// `berth config acl` prints them for external ones. Permissions come from permissions.ts.
import { BerthError, Code, type Principal } from '@berth/api';
import { inboxPrefixOf } from './nats.js';
import {
  derivePassword,
  natsPermissions,
  PRINCIPALS,
  redisAclRules,
  userOf,
  usesRedis,
} from './permissions.js';

/** The master secrets per-principal passwords are derived from (one for NATS, one for Redis). */
export interface AclSecrets {
  nats: string;
  redis: string;
}

/** One principal's logins on one node. */
export interface PrincipalLogin {
  principal: Principal;
  user: string;
  natsPassword: string;
  /** Absent for principals that never use Redis (the CLI). */
  redisPassword?: string;
}

/** The logins of every principal on a node. */
export function principalLogins(node: string, secrets: AclSecrets): PrincipalLogin[] {
  return PRINCIPALS.map((principal) => {
    const user = userOf(principal, node);
    return {
      principal,
      user,
      natsPassword: derivePassword(secrets.nats, 'nats', user),
      ...(usesRedis(principal) ? { redisPassword: derivePassword(secrets.redis, 'redis', user) } : {}),
    };
  });
}

/** A NATS URL list with one login put into each URL (`nats://user:pass@host`). */
export function withLogin(url: string, user: string, password: string): string {
  const userinfo = `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
  return url
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '')
    .map((u) => {
      const m = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)?(?:[^/?#@]*@)?(.*)$/.exec(u) as RegExpExecArray;
      return `${m[1] ?? ''}${userinfo}${m[2]}`;
    })
    .join(',');
}

/**
 * The nats-server `authorization` block: one user per principal with its permissions, plus an
 * optional administrator without limits (the operator's and the supervisor's, never a service's),
 * whose requests the services answer.
 * Strings are JSON-quoted, which the NATS config format reads literally (`$SRV` is no variable).
 */
export function natsAuthorization(
  node: string,
  secrets: AclSecrets,
  admin?: { user: string; password: string },
): string {
  if (admin && !inboxPrefixOf(admin.user)) {
    // Its replies would come to the shared `_INBOX`, which no service may answer.
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `administrator "${admin.user}": a user name is letters, digits, "_" and "-" in parts joined by "."`,
    );
  }
  const users: string[] = [];
  if (admin)
    users.push(`    { user: ${JSON.stringify(admin.user)}, password: ${JSON.stringify(admin.password)} }`);
  for (const l of principalLogins(node, secrets)) {
    const p = natsPermissions(l.principal, node, admin ? [admin.user] : []);
    users.push(
      `    {\n      user: ${JSON.stringify(l.user)}, password: ${JSON.stringify(l.natsPassword)}\n` +
        `      permissions: {\n` +
        `        publish: { allow: ${JSON.stringify(p.publish)} }\n` +
        `        subscribe: { allow: ${JSON.stringify(p.subscribe)} }\n` +
        `      }\n    }`,
    );
  }
  return `authorization {\n  users: [\n${users.join('\n')}\n  ]\n}\n`;
}

/**
 * redis-server `user` directives (redis.conf or an ACL file), one per principal that uses Redis.
 * Each starts from `reset`, so loading it again never keeps an older grant. The default user is
 * left alone: it stays the administrator (`requirepass`).
 */
export function redisUsers(node: string, secrets: AclSecrets): string {
  const lines: string[] = [];
  for (const l of principalLogins(node, secrets)) {
    if (!l.redisPassword) continue;
    lines.push(`user ${l.user} reset on >${l.redisPassword} ${redisAclRules(l.principal, node).join(' ')}`);
  }
  return `${lines.join('\n')}\n`;
}
