import {
  type Mount,
  SnapshotApi,
  type SnapshotGcReply,
  type SnapshotInfo,
  type SnapshotUsageReply,
} from '@berth/api';
import { collectAll } from '@berth/kit/paging';
import type { RequestOptions, Scope } from './scope.js';

/** The snapshots of the connection's node (its snapshot-service), as containerd's snapshotter. */
export class Snapshots {
  constructor(private readonly scope: Scope) {}

  /**
   * Lists snapshots; each filter is a conjunction of comma-separated clauses
   * (`kind==committed,labels."a.b"==x`) and a snapshot matches when any filter does.
   */
  async list(filters?: string[], opts?: RequestOptions): Promise<SnapshotInfo[]> {
    const page = (input: { filters?: string[]; cursor?: string }) =>
      this.scope.call(SnapshotApi, 'list', input, opts);
    return collectAll(page, filters ? { filters } : {}, 'snapshots');
  }

  /** One snapshot by key (active, view) or name (committed); NOT_FOUND when absent. */
  stat(key: string, opts?: RequestOptions): Promise<SnapshotInfo> {
    return this.scope.call(SnapshotApi, 'stat', { key }, opts);
  }

  /**
   * Disk used by the snapshot's own directory (parents excluded). An active snapshot's figure is
   * its node's cached one, up to one refresh period old (`measuredAt` says when it was taken);
   * `fresh: true` measures it now.
   */
  usage(key: string, opts?: RequestOptions & { fresh?: boolean }): Promise<SnapshotUsageReply> {
    const { fresh, ...rest } = opts ?? {};
    return this.scope.call(SnapshotApi, 'usage', fresh ? { key, fresh } : { key }, rest);
  }

  /** The mounts of an active or view snapshot (paths on the node). */
  async mounts(key: string, opts?: RequestOptions): Promise<Mount[]> {
    return (await this.scope.call(SnapshotApi, 'mounts', { key }, opts)).mounts;
  }

  /** A new active snapshot on a committed parent; returns its mounts (paths on the node). */
  async prepare(
    key: string,
    o: { parent?: string; labels?: Record<string, string> } & RequestOptions = {},
  ): Promise<Mount[]> {
    const { timeoutMs, ...rest } = o;
    return (await this.scope.call(SnapshotApi, 'prepare', { key, ...rest }, timeoutMs ? { timeoutMs } : {}))
      .mounts;
  }

  /** A new read-only snapshot of a committed parent; returns its mounts. */
  async view(
    key: string,
    o: { parent?: string; labels?: Record<string, string> } & RequestOptions = {},
  ): Promise<Mount[]> {
    const { timeoutMs, ...rest } = o;
    return (await this.scope.call(SnapshotApi, 'view', { key, ...rest }, timeoutMs ? { timeoutMs } : {}))
      .mounts;
  }

  /** Commits the active snapshot `key` as the committed snapshot `name`. */
  commit(name: string, key: string, labels?: Record<string, string>): Promise<SnapshotInfo> {
    return this.scope.call(SnapshotApi, 'commit', { name, key, ...(labels ? { labels } : {}) });
  }

  /** Replaces a snapshot's labels, or with `fieldpaths` (`labels.a`) sets only those. */
  update(key: string, labels: Record<string, string>, fieldpaths?: string[]): Promise<SnapshotInfo> {
    return this.scope.call(SnapshotApi, 'update', { key, labels, ...(fieldpaths ? { fieldpaths } : {}) });
  }

  /** Removes a snapshot without children. */
  async remove(key: string, opts?: RequestOptions): Promise<void> {
    await this.scope.call(SnapshotApi, 'remove', { key }, opts);
  }

  /** Removes snapshots no image or container reaches (`dryRun` only reports them). */
  gc(o: { graceMs?: number; dryRun?: boolean } = {}): Promise<SnapshotGcReply> {
    return this.scope.call(SnapshotApi, 'gc', o);
  }
}
