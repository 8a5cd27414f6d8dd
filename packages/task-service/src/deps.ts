import {
  type ImageRecord,
  type Mount,
  type MountsReply,
  type PrepareRequest,
  Service,
  type ShimCreateRequest,
  type ShimExecRequest,
  type ShimKillRequest,
  type ShimState,
  type ShimTaskRef,
} from '@berth/api';
import { call, publishEvent } from '@berth/kit';
import type { NatsConnection } from 'nats';

/** The node-local services the task-service drives, as the domain sees them (no NATS in its types). */
export interface Deps {
  images: {
    get(node: string, ns: string, name: string): Promise<ImageRecord>;
  };
  snapshots: {
    prepare(node: string, req: PrepareRequest): Promise<Mount[]>;
    mounts(node: string, key: string): Promise<Mount[]>;
    remove(node: string, key: string): Promise<void>;
  };
  shim: {
    create(node: string, req: ShimCreateRequest): Promise<ShimState>;
    start(node: string, ref: ShimTaskRef): Promise<ShimState>;
    kill(node: string, req: ShimKillRequest): Promise<void>;
    delete(node: string, ref: ShimTaskRef): Promise<ShimState>;
    state(node: string, ref: ShimTaskRef): Promise<ShimState>;
    exec(node: string, req: ShimExecRequest): Promise<ShimState>;
    /** Removes a removed container's generated files and kept log on its node. */
    removeFiles(node: string, ref: ShimTaskRef): Promise<void>;
    /** Operations whose replies the task-service passes through unchanged. */
    forward(node: string, op: string, req: ShimTaskRef & Record<string, unknown>): Promise<unknown>;
  };
  publish(topic: string, ns: string, event: unknown): void;
}

/** Per-operation timeouts of calls to the node services, in ms. */
const T = { short: 5_000, medium: 30_000, long: 120_000 } as const;

/** Deps over NATS: every call goes to the service instance of the container's node. */
export function natsDeps(nc: NatsConnection): Deps {
  const img = <O>(node: string, ns: string, op: string, p: unknown, t: number) =>
    call<O>(nc, Service.image, op, p, { node, namespace: ns, timeoutMs: t });
  const snap = <O>(node: string, op: string, p: unknown, t: number) =>
    call<O>(nc, Service.snapshot, op, p, { node, timeoutMs: t });
  const shim = <O>(node: string, op: string, p: { namespace: string }, t: number) =>
    call<O>(nc, Service.shim, op, p, { node, namespace: p.namespace, timeoutMs: t });
  return {
    images: { get: (node, ns, name) => img<ImageRecord>(node, ns, 'get', { name }, T.short) },
    snapshots: {
      prepare: async (node, req) => (await snap<MountsReply>(node, 'prepare', req, T.long)).mounts,
      mounts: async (node, key) => (await snap<MountsReply>(node, 'mounts', { key }, T.short)).mounts,
      remove: async (node, key) => {
        await snap(node, 'remove', { key }, T.medium);
      },
    },
    shim: {
      create: (node, req) => shim<ShimState>(node, 'create', req, T.long),
      start: (node, ref) => shim<ShimState>(node, 'start', ref, T.medium),
      kill: async (node, req) => {
        await shim(node, 'kill', req, T.short);
      },
      delete: (node, ref) => shim<ShimState>(node, 'delete', ref, T.medium),
      state: (node, ref) => shim<ShimState>(node, 'state', ref, T.short),
      exec: (node, req) => shim<ShimState>(node, 'exec', req, T.medium),
      removeFiles: async (node, ref) => {
        await shim(node, 'remove-files', ref, T.short);
      },
      forward: (node, op, req) => shim(node, op, req, T.medium),
    },
    publish: (topic, ns, event) => publishEvent(nc, topic, ns, event),
  };
}
