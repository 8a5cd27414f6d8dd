// Per-principal users on a real nats-server and redis-server, configured exactly as `berth up`
// writes them (acl-config.ts): each principal reaches what its role and its key families allow,
// and nothing else.
import { randomBytes } from 'node:crypto';
import { Principal, ShimApi, subjectOf, TaskApi } from '@berth/api';
import { startNats, startRedis } from '@berth/testing';
import { Redis } from 'ioredis';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsAuthorization, principalLogins, redisUsers, withLogin } from './acl-config.js';
import { keyOwners, keys } from './keys.js';
import { tryLock } from './lock.js';
import { connectNats } from './nats.js';
import { natsPermissions, ownedFamilies, PRINCIPALS, redisAclRules, usesRedis } from './permissions.js';

const NODE = 'n1';
const secrets = { nats: randomBytes(32).toString('base64url'), redis: randomBytes(32).toString('base64url') };
const logins = new Map(principalLogins(NODE, secrets).map((l) => [l.principal, l]));
const login = (p: Principal) => logins.get(p) as NonNullable<ReturnType<typeof logins.get>>;

/** One sample key per family, with awkward but valid parts (colons in image names and digests). */
function sampleKey(family: keyof typeof keys, node = NODE): string {
  const build = keys[family] as (...a: string[]) => string;
  const parts = ['default', 'docker.io/library/busybox:1.36', 'sha256:0123abcd', 'exec-1'];
  return build.length === 0 ? build() : build(node, ...parts.slice(0, build.length - 1));
}

describe('permissions derived from the contracts', () => {
  it('gives the gateway only the shim operations it uses, on its own node', () => {
    const p = natsPermissions(Principal.cri, NODE);
    const shim = p.publish.filter((s) => s.includes('.shim.'));
    expect(shim.sort()).toEqual(
      [
        'info',
        'reopen-log',
        'network-netns',
        'network-setup',
        'network-teardown',
        'network-list',
        'network-pod-cidr',
      ]
        .map((op) => subjectOf(ShimApi, op, NODE))
        .sort(),
    );
    expect(p.publish).toContain(subjectOf(TaskApi, '>'));
    expect(p.subscribe).toEqual(expect.arrayContaining(['_INBOX.cri-gateway.n1.>', 'berth.cri.v1.>']));
    expect(p.subscribe.some((s) => s.startsWith('_INBOX.') && !s.startsWith('_INBOX.cri-gateway.n1.'))).toBe(
      false,
    );
  });

  it('lets a host-local service answer its own node only, and cluster-wide callers from any node', () => {
    const p = natsPermissions(Principal.shim, NODE);
    expect(p.subscribe).toContain('berth.n1.shim.v1.>');
    expect(p.publish).toEqual(
      expect.arrayContaining(['_INBOX.task-service.*.>', '_INBOX.cri-gateway.n1.>', '_INBOX.cli.*.>']),
    );
    expect(p.publish).not.toContain('_INBOX.image-service.n1.>');
    expect(p.publish).toContain('berth.events.tasks.exit');
  });

  it("lets a caller of the shim's stream ops send acknowledgements and stdin to the shim's inboxes only", () => {
    // logs and attach answer with the producer's inbox; the reader acknowledges frames there.
    expect(natsPermissions(Principal.cli, NODE).publish).toContain('_INBOX.shim.*.>');
    const gateway = natsPermissions(Principal.cri, NODE).publish;
    expect(gateway.some((s) => s.startsWith('_INBOX.shim.'))).toBe(false);
    expect(natsPermissions(Principal.image, NODE).publish.some((s) => s.startsWith('_INBOX.shim.'))).toBe(
      false,
    );
  });

  it('grants each owned key family on this node, the lock counter with it, and nothing to the CLI', () => {
    expect(redisAclRules(Principal.image, NODE)).toContain('~berth:v1:node:n1:ns:*:image:*');
    expect(ownedFamilies(Principal.task)).toEqual(expect.arrayContaining(['task', 'container', 'fence']));
    expect(ownedFamilies(Principal.cri)).toEqual([]);
    expect(usesRedis(Principal.cli)).toBe(false);
    for (const f of Object.keys(keyOwners) as (keyof typeof keys)[]) {
      const owners = keyOwners[f].filter((o) => o !== 'kit');
      for (const o of owners) expect(ownedFamilies(o), `${o} owns ${f}`).toContain(f);
    }
  });
});

describe('on real servers configured with the generated users', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  const open: NatsConnection[] = [];
  const clients: Redis[] = [];

  beforeAll(async () => {
    [nats, redis] = await Promise.all([
      startNats({ jetstream: false, config: natsAuthorization(NODE, secrets) }),
      startRedis({ appendonly: false, config: redisUsers(NODE, secrets) }),
    ]);
  });
  afterAll(async () => {
    await Promise.all(open.map((nc) => nc.close()));
    for (const r of clients) r.disconnect();
    await Promise.all([nats?.stop(), redis?.stop()]);
  });

  async function natsAs(p: Principal): Promise<NatsConnection> {
    const l = login(p);
    const nc = await connectNats({
      url: withLogin(nats.url, l.user, l.natsPassword),
      name: `perm-${p}`,
      extra: { waitOnFirstConnect: false, maxReconnectAttempts: 0 },
    });
    open.push(nc);
    return nc;
  }
  async function redisAs(p: Principal): Promise<Redis> {
    const l = login(p);
    const r = new Redis({ host: '127.0.0.1', port: redis.port, username: l.user, password: l.redisPassword });
    clients.push(r);
    await r.ping();
    return r;
  }

  it("the gateway's credentials cannot publish to a shim subject it has no grant for", async () => {
    const shim = await natsAs(Principal.shim);
    const seen: string[] = [];
    shim.subscribe(subjectOf(ShimApi, '>', NODE), {
      callback: (_e, m) => {
        seen.push(m.subject);
        m.respond(new TextEncoder().encode('{}'));
      },
    });
    await shim.flush();
    const gw = await natsAs(Principal.cri);
    // Allowed: the shim answers, through the gateway's own inbox.
    const ok = await gw.request(subjectOf(ShimApi, 'network-list', NODE), new Uint8Array(), {
      timeout: 5000,
    });
    expect(new TextDecoder().decode(ok.data)).toBe('{}');
    // Refused by the server: the publish never reaches the shim.
    await expect(
      gw.request(subjectOf(ShimApi, 'create', NODE), new Uint8Array(), { timeout: 2000 }),
    ).rejects.toMatchObject({ code: 'PERMISSIONS_VIOLATION' });
    gw.publish(subjectOf(ShimApi, 'kill', NODE), new Uint8Array());
    await gw.flush();
    await shim.flush();
    expect(seen).toEqual([subjectOf(ShimApi, 'network-list', NODE)]);
    // Nor may it listen in on the shim's subjects or on another principal's replies.
    for (const subject of [subjectOf(ShimApi, '>', NODE), '_INBOX.task-service.n1.>']) {
      const sub = gw.subscribe(subject);
      await expect(
        (async () => {
          for await (const _ of sub) break;
        })(),
        subject,
      ).rejects.toMatchObject({ code: 'PERMISSIONS_VIOLATION' });
    }
  });

  it("the image-service's Redis user cannot write a task key, and may use its own keys and locks", async () => {
    const img = await redisAs(Principal.image);
    await expect(img.hset(keys.task('default', 'c1'), 'status', 'running')).rejects.toThrow(/NOPERM/);
    await expect(img.get(keys.container('default', 'c1'))).rejects.toThrow(/NOPERM/);
    await expect(img.flushall()).rejects.toThrow(/NOPERM/);
    await img.hset(keys.image(NODE, 'default', 'busybox:1.36'), 'target', 'sha256:1');
    // Another node's images are not this node's image-service's.
    await expect(img.hset(keys.image('n2', 'default', 'busybox:1.36'), 'target', 'x')).rejects.toThrow(
      /NOPERM/,
    );
    // Locks run Lua with the caller's ACL: the lock key and the fencing counter are both granted.
    const lock = await tryLock(img, keys.blobLock(NODE, 'sha256:1'), 5000);
    expect(lock?.fence).toBeGreaterThan(0);
    await lock?.release();
    const task = await redisAs(Principal.task);
    await task.hset(keys.task('default', 'c1'), 'status', 'running');
    const gw = await redisAs(Principal.cri);
    await expect(gw.get(keys.task('default', 'c1'))).rejects.toThrow(/NOPERM/);
  });

  it('every principal may write exactly the key families it owns (ACL DRYRUN on the server)', async () => {
    const admin = new Redis({ host: '127.0.0.1', port: redis.port });
    clients.push(admin);
    for (const p of PRINCIPALS.filter(usesRedis)) {
      const own = ownedFamilies(p);
      for (const f of Object.keys(keyOwners) as (keyof typeof keys)[]) {
        const verdict = await admin.call('ACL', 'DRYRUN', login(p).user, 'SET', sampleKey(f), 'x');
        expect(verdict === 'OK', `${p} writes ${f} (${sampleKey(f)}): ${verdict}`).toBe(own.includes(f));
      }
    }
  });
});
