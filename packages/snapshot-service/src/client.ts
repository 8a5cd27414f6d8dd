import {
  type CommitSnapshotRequest,
  type ListSnapshotsReply,
  type ListSnapshotsRequest,
  type MountsReply,
  type PrepareRequest,
  Service,
  type SnapshotCleanupReply,
  type SnapshotGcReply,
  type SnapshotGcRequest,
  type SnapshotInfo,
  type SnapshotKeyRequest,
  type SnapshotUsageReply,
  type UnpackReply,
  type UnpackRequest,
  type UpdateSnapshotRequest,
} from '@berth/api';
import { makeClient } from '@berth/kit';
import type { NatsConnection } from 'nats';

/** Request and reply types of every snapshot-service operation. */
export type SnapshotOps = {
  prepare: { in: PrepareRequest; out: MountsReply };
  view: { in: PrepareRequest; out: MountsReply };
  mounts: { in: SnapshotKeyRequest; out: MountsReply };
  commit: { in: CommitSnapshotRequest; out: SnapshotInfo };
  remove: { in: SnapshotKeyRequest; out: Record<string, never> };
  stat: { in: SnapshotKeyRequest; out: SnapshotInfo };
  update: { in: UpdateSnapshotRequest; out: SnapshotInfo };
  list: { in: ListSnapshotsRequest; out: ListSnapshotsReply };
  usage: { in: SnapshotKeyRequest; out: SnapshotUsageReply };
  cleanup: { in: Record<string, never>; out: SnapshotCleanupReply };
  unpack: { in: UnpackRequest; out: UnpackReply };
  gc: { in: SnapshotGcRequest; out: SnapshotGcReply };
};

/** Per-operation timeouts: metadata calls are short, unpack and gc are long. */
export const snapshotTimeouts: { [K in keyof SnapshotOps]: number } = {
  prepare: 30_000,
  view: 30_000,
  mounts: 10_000,
  commit: 120_000,
  remove: 120_000,
  stat: 10_000,
  update: 10_000,
  list: 30_000,
  usage: 120_000,
  cleanup: 300_000,
  unpack: 1_800_000,
  gc: 300_000,
};

/** A typed client of one node's snapshot-service. */
export function snapshotClient(nc: NatsConnection, node: string, namespace?: string) {
  return makeClient<SnapshotOps>(
    nc,
    Service.snapshot,
    snapshotTimeouts,
    namespace ? { node, namespace } : { node },
  );
}
export type SnapshotClient = ReturnType<typeof snapshotClient>;
