// Least privilege on the bus and in Redis, derived from the contracts: each principal's NATS
// publish/subscribe allow lists come from its bus role (@berth/api busRoles) and the subjects of
// the services it serves and calls; its Redis ACL from the key families it owns (keyOwners). No
// table of subjects or keys lives here, so a new operation or key family needs no edit.
import { createHmac } from 'node:crypto';
import {
  type BusRole,
  busRoles,
  type CallGrant,
  eventSubject,
  Principal,
  type ServiceDef,
  StreamEnd,
  subjectOf,
} from '@berth/api';
import { type KeyFamily, keyOwners, keyPattern } from './keys.js';
import { INBOX_ROOT } from './nats.js';

/** Every principal, services first then the CLI. */
export const PRINCIPALS: readonly Principal[] = Object.values(Principal);

/** The NATS and Redis user name of a principal on a node: `<principal>.<node>`. */
export function userOf(principal: Principal, node: string): string {
  return `${principal}.${node}`;
}

/** Every reply inbox of a principal's user on a node (`*`: any node), as connectNats names them. */
function inboxesOf(principal: Principal, node: string): string {
  return `${INBOX_ROOT}.${userOf(principal, node)}.>`;
}

/** Subject allow lists of one NATS user. */
export interface NatsPermissions {
  publish: string[];
  subscribe: string[];
}

/** The node token a subject gets: this node, or `*` for every node. */
type NodeToken = string;

function grantSubjects(g: CallGrant, node: NodeToken): string[] {
  const ops = g.ops ?? ['>'];
  return ops.map((op) => subjectOf(g.service, op, node));
}

/** The grants of a role, plus a service's own `info` (a shim asks whether another one answers). */
function grantsOf(role: BusRole): CallGrant[] {
  return role.serves ? [...role.calls, { service: role.serves, ops: ['info'] }] : [...role.calls];
}

/** The event topics of a service's operations (`{field}` becomes one token, `*`). */
function opEventTopics(def: ServiceDef): string[] {
  return Object.values(def.ops).flatMap((op) => (op.events ? [op.events.replace(/\{\w+\}/g, '*')] : []));
}

function calls(role: BusRole, def: ServiceDef): boolean {
  return grantsOf(role).some((g) => g.service.name === def.name);
}

/**
 * The reply inboxes a service may publish to: those of every principal allowed to call it (or to
 * ask `$SRV`), and those of the administrators. A host-local service answers node-bound callers of
 * its own node only; everything else may come from any node.
 */
function replyInboxes(def: ServiceDef, node: string, admins: readonly string[]): string[] {
  const out = admins.map((user) => `${INBOX_ROOT}.${user}.>`);
  for (const p of PRINCIPALS) {
    const role = busRoles[p];
    if (!calls(role, def) && !role.discovers) continue;
    const callerNode = def.scope === 'host' && !role.anyNode ? node : '*';
    out.push(inboxesOf(p, callerNode));
  }
  return out;
}

/**
 * The inboxes a caller of `g` sends stream frames to: a stream op's producer end (its
 * acknowledgements and stdin go there, see @berth/api stream.ts) is an inbox of the principal that
 * serves the service, on the node called. None when the grant has no stream op.
 */
function streamInboxes(g: CallGrant, node: NodeToken): string[] {
  const ops = g.ops ?? Object.keys(g.service.ops);
  if (!ops.some((op) => g.service.ops[op]?.output === StreamEnd)) return [];
  const server = PRINCIPALS.find((p) => busRoles[p].serves?.name === g.service.name);
  return server ? [inboxesOf(server, node)] : [];
}

/** Service API discovery subjects a service answers: `$SRV.<verb>`, `.<name>` and `.<name>.<id>`. */
function discoverySubjects(def: ServiceDef): string[] {
  return ['$SRV.*', `$SRV.*.${def.name}`, `$SRV.*.${def.name}.*`];
}

function unique(list: string[]): string[] {
  return [...new Set(list)];
}

/**
 * The NATS permissions of one principal on one node: publish to the subjects it calls (its own
 * node's, unless it is a cluster-wide caller), its event topics and its callers' reply inboxes;
 * subscribe to the subjects it serves, `$SRV` discovery, its own reply inbox and the events it
 * listens to. `admins` are users without limits (the operator's, `berth up`'s `berth`) whose
 * requests services answer too.
 */
export function natsPermissions(
  principal: Principal,
  node: string,
  admins: readonly string[] = [],
): NatsPermissions {
  const role = busRoles[principal];
  const callNode = role.anyNode ? '*' : node;
  const publish = grantsOf(role).flatMap((g) => grantSubjects(g, callNode));
  publish.push(...role.calls.flatMap((g) => streamInboxes(g, callNode)));
  publish.push(...role.emits.map(eventSubject));
  if (role.discovers) publish.push('$SRV.>');
  const subscribe = [inboxesOf(principal, node)];
  subscribe.push(...role.listens.map(eventSubject));
  if (role.serves) {
    const def = role.serves;
    publish.push(...opEventTopics(def).map(eventSubject), ...replyInboxes(def, node, admins));
    subscribe.push(subjectOf(def, '>', node), ...discoverySubjects(def));
  }
  return { publish: unique(publish), subscribe: unique(subscribe) };
}

/** True when a principal connects to Redis: every service does (the kit's runService); the CLI does not. */
export function usesRedis(principal: Principal): boolean {
  return busRoles[principal].serves !== undefined;
}

/** The key families a principal owns, plus the kit's (the lock fencing counter) for any owner. */
export function ownedFamilies(principal: Principal): KeyFamily[] {
  const families = Object.keys(keyOwners) as KeyFamily[];
  const own = families.filter((f) => (keyOwners[f] as readonly string[]).includes(principal));
  if (own.length === 0) return [];
  return [...own, ...families.filter((f) => keyOwners[f].includes('kit') && !own.includes(f))];
}

/**
 * Commands a key-owning service may run: reads, writes, MULTI and Lua (scripts run with the
 * caller's ACL in Redis 7, so their keys are checked too), but nothing @dangerous (FLUSHALL,
 * KEYS, CONFIG, ACL, DEBUG...), no pub/sub and no emptying the script or function caches.
 * INFO stays: ioredis asks it when it connects.
 */
const OWNER_COMMANDS = [
  '+@all',
  '-@dangerous',
  '-@pubsub',
  '-function',
  '-script|flush',
  '-script|kill',
  '+info',
];
/** A service that owns no key (the gateway) may only connect and PING. */
const NO_KEY_COMMANDS = ['-@all', '+@connection', '+info'];

/**
 * The Redis ACL rules of one principal on one node (after `user <name> on >password`): its key
 * families' patterns (host-local families on this node only) and its commands. Starts from
 * `reset`, so re-applying a rule set never keeps an old grant.
 */
export function redisAclRules(principal: Principal, node: string): string[] {
  const families = ownedFamilies(principal);
  const patterns = unique(families.map((f) => `~${keyPattern(f, node)}`));
  return [
    'resetkeys',
    'resetchannels',
    ...patterns,
    ...(families.length > 0 ? OWNER_COMMANDS : NO_KEY_COMMANDS),
  ];
}

/**
 * A principal's password, derived from a master secret: HMAC-SHA256 over what it is for
 * (`nats` or `redis`) and the user name, base64url. Stable across restarts without another file,
 * distinct per user, and no user can work out another's or the master from its own.
 */
export function derivePassword(master: string, kind: 'nats' | 'redis', user: string): string {
  return createHmac('sha256', master).update(`berth/${kind}/${user}`).digest('base64url');
}
