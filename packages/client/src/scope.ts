import { type InputOf, type OpName, type OutputOf, type ServiceDef, ShimApi } from '@berth/api';
import { type CallOptions, call } from '@berth/kit/client';
import type { NatsConnection } from 'nats';

/** Per-call options every SDK method takes. */
export interface RequestOptions {
  /** Overrides the operation's timeout from its definition, in ms. */
  timeoutMs?: number;
}

/**
 * What every part of the SDK shares: the NATS connection, the node host-local services are
 * addressed on, and the namespace objects live in.
 */
export class Scope {
  constructor(
    readonly nc: NatsConnection,
    readonly node: string,
    readonly namespace: string,
  ) {}

  /** Calls an operation of a service through the kit's validated client, on this scope's node. */
  call<S extends ServiceDef, K extends OpName<S>>(
    service: S,
    op: K,
    input: InputOf<S, K>,
    opts: RequestOptions & { node?: string } = {},
  ): Promise<OutputOf<S, K>> {
    const o: CallOptions = { node: opts.node ?? this.node, namespace: this.namespace };
    if (opts.timeoutMs !== undefined) o.timeoutMs = opts.timeoutMs;
    return call(this.nc, service, op, input, o);
  }

  /** Calls the shim of `node` (host-local): the node a container runs on, not necessarily ours. */
  shim<K extends OpName<typeof ShimApi>>(
    node: string,
    op: K,
    input: InputOf<typeof ShimApi, K>,
  ): Promise<OutputOf<typeof ShimApi, K>> {
    return this.call(ShimApi, op, input, { node });
  }

  /** The same connection and node, another namespace. */
  withNamespace(namespace: string): Scope {
    return new Scope(this.nc, this.node, namespace);
  }
}
