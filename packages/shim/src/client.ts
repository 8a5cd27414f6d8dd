import {
  Service,
  type ShimCreateRequest,
  type ShimExecOutput,
  type ShimExecRequest,
  type ShimKillReply,
  type ShimKillRequest,
  type ShimListReply,
  type ShimListRequest,
  type ShimNetworkListReply,
  type ShimNetworkSetupRequest,
  type ShimNetworkTeardownReply,
  type ShimNetworkTeardownRequest,
  ShimOps,
  type ShimPidsReply,
  type ShimPodNetwork,
  type ShimPodRef,
  type ShimResizeRequest,
  type ShimState,
  type ShimStats,
  type ShimTaskRef,
  type ShimUpdateRequest,
  type ShimWaitReply,
} from '@berth/api';
import { makeClient } from '@berth/kit';
import type { NatsConnection } from 'nats';

type Empty = Record<string, never>;

/** Input and reply of every shim operation. */
export interface ShimApi {
  create: { in: ShimCreateRequest; out: ShimState };
  start: { in: ShimTaskRef; out: ShimState };
  state: { in: ShimTaskRef; out: ShimState };
  kill: { in: ShimKillRequest; out: ShimKillReply };
  wait: { in: ShimTaskRef; out: ShimWaitReply };
  delete: { in: ShimTaskRef; out: ShimState };
  exec: { in: ShimExecRequest; out: ShimState };
  pause: { in: ShimTaskRef; out: Empty };
  resume: { in: ShimTaskRef; out: Empty };
  pids: { in: ShimTaskRef; out: ShimPidsReply };
  stats: { in: ShimTaskRef; out: ShimStats };
  update: { in: ShimUpdateRequest; out: Empty };
  'close-stdin': { in: ShimTaskRef; out: Empty };
  resize: { in: ShimResizeRequest; out: Empty };
  list: { in: ShimListRequest; out: ShimListReply };
  'exec-output': { in: ShimTaskRef; out: ShimExecOutput };
  'reopen-log': { in: ShimTaskRef; out: Empty };
  'remove-files': { in: ShimTaskRef; out: Empty };
  'network-setup': { in: ShimNetworkSetupRequest; out: ShimPodNetwork };
  'network-teardown': { in: ShimNetworkTeardownRequest; out: ShimNetworkTeardownReply };
  'network-status': { in: ShimPodRef; out: ShimPodNetwork };
  'network-list': { in: Empty; out: ShimNetworkListReply };
}

/** Input types that zod fills with defaults, optional for callers. */
type Loose<T> = { [K in keyof T]: T[K] extends { in: infer I; out: infer O } ? { in: I; out: O } : never };

/**
 * A typed client of one node's shim agent over NATS. Each request names its namespace in the
 * payload; `wait` blocks until the exit is persisted, so pass a timeoutMs you can afford.
 */
export function shimClient(nc: NatsConnection, node: string) {
  return makeClient<Loose<ShimApi>>(nc, Service.shim, { ...ShimOps }, { node });
}
export type ShimClient = ReturnType<typeof shimClient>;
