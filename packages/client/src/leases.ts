import { ImageApi, type Lease } from '@berth/api';
import type { RequestOptions, Scope } from './scope.js';

/** Options of {@link Leases.create}. */
export interface LeaseOptions {
  /** The lease's id (`[A-Za-z0-9_.-]{1,128}`); default a random one. */
  id?: string;
  /** How long it protects what it holds, in ms (default 24 h, at most 7 days). */
  ttlMs?: number;
  labels?: Record<string, string>;
}

/**
 * Leases of the node, as containerd's: while a program works through several calls (content
 * it wrote, snapshots it prepared), what it adds to a lease is kept from garbage collection until
 * the lease is deleted or expires. Kept by the node's image-service, per namespace.
 */
export class Leases {
  constructor(private readonly scope: Scope) {}

  /** Creates a lease; ALREADY_EXISTS when its id is taken on the node. */
  create(o: LeaseOptions = {}, opts?: RequestOptions): Promise<Lease> {
    return this.scope.call(ImageApi, 'lease-create', o, opts);
  }

  /** Adds content digests and snapshot keys the lease protects from now on. */
  add(id: string, resources: { content?: string[]; snapshots?: string[] }): Promise<Lease> {
    return this.scope.call(ImageApi, 'lease-add', { id, ...resources });
  }

  /** Ends a lease: what it held can be collected again. */
  async delete(id: string): Promise<void> {
    await this.scope.call(ImageApi, 'lease-delete', { id });
  }

  /** The namespace's live leases on the node. */
  async list(): Promise<Lease[]> {
    return (await this.scope.call(ImageApi, 'lease-list', {})).leases;
  }

  /**
   * Runs `fn` holding a new lease and deletes the lease afterwards, whether `fn` succeeded or not
   * (as containerd's `WithLease`).
   */
  async with<T>(fn: (lease: Lease) => Promise<T>, o: LeaseOptions = {}): Promise<T> {
    const lease = await this.create(o);
    try {
      return await fn(lease);
    } finally {
      await this.delete(lease.id).catch(() => undefined);
    }
  }
}
