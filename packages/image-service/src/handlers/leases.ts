import type { ImageApi } from '@berth/api';
import type { Handlers } from '@berth/kit';
import type { ClientLeases } from '../content/client-leases.js';

/** `lease-create`, `lease-add`, `lease-delete`, `lease-list`: clients' leases (GC roots), per namespace. */
export function leaseHandlers(
  leases: ClientLeases,
): Pick<Handlers<typeof ImageApi>, 'lease-create' | 'lease-add' | 'lease-delete' | 'lease-list'> {
  return {
    'lease-create': (req, ctx) => leases.create(ctx.namespace, req),
    'lease-add': (req, ctx) => leases.add(ctx.namespace, req),
    'lease-delete': async (req, ctx) => {
      await leases.delete(ctx.namespace, req.id);
      return {};
    },
    'lease-list': async (_req, ctx) => ({ leases: await leases.list(ctx.namespace) }),
  };
}
