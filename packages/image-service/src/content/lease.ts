import { randomUUID } from 'node:crypto';
import { keys, type Redis } from '@berth/kit';

/**
 * A lease protects the blobs of an operation in progress (a pull or import whose image record is
 * not written yet) from GC, as containerd's leases do. It expires on its own if the service dies.
 */
export class Lease {
  readonly id = randomUUID();
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly redis: Redis,
    private readonly node: string,
    private readonly ttlMs: number,
  ) {
    this.timer = setInterval(() => void this.touch().catch(() => undefined), Math.max(500, ttlMs / 3));
    this.timer.unref();
  }

  /** Creates and registers a lease. */
  static async create(redis: Redis, node: string, ttlMs: number): Promise<Lease> {
    const l = new Lease(redis, node, ttlMs);
    await l.touch();
    return l;
  }

  private async touch(): Promise<void> {
    await this.redis
      .multi()
      .zadd(keys.leases(this.node), Date.now() + this.ttlMs, this.id)
      .pexpire(keys.lease(this.node, this.id), this.ttlMs * 2)
      .exec();
  }

  /** Adds blobs to the lease; call before the blob is written so GC never sees it unprotected. */
  async add(...digests: string[]): Promise<void> {
    if (digests.length === 0) return;
    await this.redis
      .multi()
      .sadd(keys.lease(this.node, this.id), ...digests)
      .pexpire(keys.lease(this.node, this.id), this.ttlMs * 2)
      .exec();
  }

  /** Ends the lease: after the image record that references the blobs is written. */
  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.multi().zrem(keys.leases(this.node), this.id).del(keys.lease(this.node, this.id)).exec();
  }
}

/** Digests protected by unexpired leases; expired leases are dropped on the way. */
export async function leasedDigests(redis: Redis, node: string): Promise<Set<string>> {
  const now = Date.now();
  const expired = await redis.zrangebyscore(keys.leases(node), 0, now);
  if (expired.length > 0) {
    const m = redis.multi().zremrangebyscore(keys.leases(node), 0, now);
    // A client's lease (client-leases.ts) has its record and snapshot set beside the blob set.
    for (const id of expired)
      m.del(keys.lease(node, id), keys.leaseInfo(node, id), keys.leaseSnapshots(node, id));
    await m.exec();
  }
  const live = await redis.zrangebyscore(keys.leases(node), now, '+inf');
  const out = new Set<string>();
  for (const id of live) for (const d of await redis.smembers(keys.lease(node, id))) out.add(d);
  return out;
}
