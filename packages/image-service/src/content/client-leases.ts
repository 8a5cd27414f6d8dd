import { randomUUID } from 'node:crypto';
import {
  BerthError,
  Code,
  type Lease,
  type LeaseCreateRequest,
  type LeaseResourcesRequest,
} from '@berth/api';
import { keys, type Redis } from '@berth/kit';

/** Resource sets outlive their lease's expiry by this much, so GC sees them until it drops the lease. */
const KEEP_AFTER_EXPIRY_MS = 3600_000;

/**
 * Leases clients hold (containerd's leases API), per namespace on this node. A client lease
 * shares the node's lease index with the pulls' own leases (`keys.leases`, scored by expiry, and
 * `keys.lease` for its blobs), so content GC honours it with no change; its snapshot keys go to
 * the snapshot-service's GC with the image roots. An expired lease protects nothing and is
 * dropped by the next GC or listing.
 */
export class ClientLeases {
  constructor(
    private readonly redis: Redis,
    private readonly node: string,
  ) {}

  /** Creates a lease; ALREADY_EXISTS when the id is taken on the node. */
  async create(ns: string, req: LeaseCreateRequest): Promise<Lease> {
    const id = req.id ?? randomUUID();
    const now = Date.now();
    const expiresAt = now + req.ttlMs;
    const info = keys.leaseInfo(this.node, id);
    const score = await this.redis.zscore(keys.leases(this.node), id);
    // An expired lease of the same id is gone for good: its keys may wait for the next GC.
    if (score !== null && Number(score) <= now) await this.drop(id);
    const taken = score !== null && Number(score) > now;
    if (taken || !(await this.redis.hsetnx(info, 'namespace', ns))) {
      throw new BerthError(Code.ALREADY_EXISTS, `lease "${id}" already exists on node "${this.node}"`);
    }
    await this.redis
      .multi()
      .hset(info, {
        labels: JSON.stringify(req.labels),
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(expiresAt).toISOString(),
      })
      .pexpireat(info, expiresAt + KEEP_AFTER_EXPIRY_MS)
      .zadd(keys.leases(this.node), expiresAt, id)
      .exec();
    return this.get(ns, id);
  }

  /** Adds content digests and snapshot keys to a live lease of the namespace. */
  async add(ns: string, req: LeaseResourcesRequest): Promise<Lease> {
    const lease = await this.get(ns, req.id);
    const until = Date.parse(lease.expiresAt) + KEEP_AFTER_EXPIRY_MS;
    const m = this.redis.multi();
    if (req.content.length) {
      m.sadd(keys.lease(this.node, req.id), ...req.content).pexpireat(keys.lease(this.node, req.id), until);
    }
    if (req.snapshots.length) {
      m.sadd(keys.leaseSnapshots(this.node, req.id), ...req.snapshots).pexpireat(
        keys.leaseSnapshots(this.node, req.id),
        until,
      );
    }
    await m.exec();
    return this.get(ns, req.id);
  }

  /** Ends a lease of the namespace: what it held is collectable again. */
  async delete(ns: string, id: string): Promise<void> {
    await this.get(ns, id);
    await this.drop(id);
  }

  private async drop(id: string): Promise<void> {
    await this.redis
      .multi()
      .zrem(keys.leases(this.node), id)
      .del(keys.leaseInfo(this.node, id), keys.lease(this.node, id), keys.leaseSnapshots(this.node, id))
      .exec();
  }

  /** The namespace's live leases. */
  async list(ns: string): Promise<Lease[]> {
    const ids = await this.redis.zrangebyscore(keys.leases(this.node), Date.now(), '+inf');
    const out: Lease[] = [];
    for (const id of ids) {
      const l = await this.read(id);
      if (l && l.namespace === ns) out.push(l);
    }
    return out;
  }

  /** A live lease of the namespace, or NOT_FOUND naming it. */
  async get(ns: string, id: string): Promise<Lease> {
    const l = await this.read(id);
    if (!l || l.namespace !== ns || Date.parse(l.expiresAt) <= Date.now()) {
      throw new BerthError(
        Code.NOT_FOUND,
        `lease "${id}" not found in namespace "${ns}" on node "${this.node}"`,
      );
    }
    return l;
  }

  private async read(id: string): Promise<Lease | undefined> {
    const info = await this.redis.hgetall(keys.leaseInfo(this.node, id));
    if (!info.namespace || !info.expiresAt) return undefined;
    const [content, snapshots] = await Promise.all([
      this.redis.smembers(keys.lease(this.node, id)),
      this.redis.smembers(keys.leaseSnapshots(this.node, id)),
    ]);
    return {
      id,
      namespace: info.namespace,
      labels: JSON.parse(info.labels ?? '{}') as Record<string, string>,
      createdAt: info.createdAt ?? '',
      expiresAt: info.expiresAt,
      content: content.sort(),
      snapshots: snapshots.sort(),
    };
  }
}

/** Snapshot keys the node's live leases hold (all namespaces): roots of the snapshot GC. */
export async function leasedSnapshots(redis: Redis, node: string): Promise<string[]> {
  const ids = await redis.zrangebyscore(keys.leases(node), Date.now(), '+inf');
  const out = new Set<string>();
  for (const id of ids) for (const s of await redis.smembers(keys.leaseSnapshots(node, id))) out.add(s);
  return [...out];
}
