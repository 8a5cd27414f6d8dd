// Leases, as containerd's: a client (an SDK program building something out of several calls)
// holds a lease while it works, and the content and snapshots named in it are GC roots until the
// lease is deleted or expires. The node's image-service keeps them (it owns the lease keys); the
// snapshot-service's GC learns the leased snapshots with the image roots (`chain-roots`).
import * as z from './lazy-zod.js';

/** A lease id: 1-128 of [A-Za-z0-9_.-], not starting with a symbol. */
export const LeaseId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/,
    'lease id: 1-128 of [A-Za-z0-9_.-], not starting with a symbol',
  );

/** The longest a lease may live: a week (a client renews by making a new one). */
export const MAX_LEASE_TTL_MS = 7 * 24 * 3600_000;

/** A lease and what it protects. */
export const Lease = z.object({
  id: z.string(),
  namespace: z.string(),
  labels: z.record(z.string(), z.string()),
  createdAt: z.string(),
  /** When it stops protecting anything, unless deleted before. */
  expiresAt: z.string(),
  /** Content digests (blobs) it keeps from content GC. */
  content: z.array(z.string()),
  /** Snapshot keys it keeps (with their parents) from snapshot GC. */
  snapshots: z.array(z.string()),
});
export type Lease = z.infer<typeof Lease>;

/** Request of `lease-create`. */
export const LeaseCreateRequest = z.object({
  /** Default: a random id. ALREADY_EXISTS when taken on the node. */
  id: LeaseId.optional(),
  /** How long it lives (ms); default 24 h. */
  ttlMs: z
    .number()
    .int()
    .min(1000)
    .max(MAX_LEASE_TTL_MS)
    .default(24 * 3600_000),
  labels: z.record(z.string(), z.string()).default({}),
});
export type LeaseCreateRequest = z.infer<typeof LeaseCreateRequest>;

/** A lease by id (in the request's namespace). */
export const LeaseRef = z.object({ id: LeaseId });
export type LeaseRef = z.infer<typeof LeaseRef>;

/** Request of `lease-add`: resources the lease protects from now on. */
export const LeaseResourcesRequest = LeaseRef.extend({
  content: z
    .array(z.string().regex(/^sha256:[a-f0-9]{64}$/, 'content digest must be sha256:<64 lowercase hex>'))
    .max(10_000)
    .default([]),
  snapshots: z.array(z.string().min(1).max(1024)).max(10_000).default([]),
});
export type LeaseResourcesRequest = z.infer<typeof LeaseResourcesRequest>;

/** Reply of `lease-list`: the namespace's live leases on the node. */
export const LeaseListReply = z.object({ leases: z.array(Lease) });
export type LeaseListReply = z.infer<typeof LeaseListReply>;
