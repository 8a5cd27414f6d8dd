import type { BlobStatus, PullProgress } from '@berth/api';

type Blob = PullProgress['blobs'][number];

/** Longest silence between two progress events of a running transfer. */
export const HEARTBEAT_MS = 5_000;

/**
 * Collects the state of one pull (or push) and hands snapshots to `emit`: at once on phase and
 * status changes, at most every `intervalMs` for byte counts, so a fast pull does not flood NATS.
 */
export class ProgressTracker {
  private readonly blobs = new Map<string, Blob>();
  private phase: PullProgress['phase'] = 'resolving';
  private digest: string | undefined;
  private error: string | undefined;
  private last = 0;
  private pending: NodeJS.Timeout | undefined;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly pullId: string,
    private readonly ref: string,
    private readonly emit: (p: PullProgress) => void,
    private readonly intervalMs = 200,
  ) {
    // A snapshot at least every HEARTBEAT_MS even when nothing moves (waiting on another
    // replica's download, a slow unpack), so a client can tell a quiet transfer from a dead service.
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.last >= HEARTBEAT_MS) this.flush();
    }, HEARTBEAT_MS / 2);
    this.heartbeat.unref();
  }

  setPhase(phase: PullProgress['phase'], extra: { digest?: string; error?: string } = {}): void {
    this.phase = phase;
    if (extra.digest) this.digest = extra.digest;
    if (extra.error) this.error = extra.error;
    this.flush();
  }

  addBlob(digest: string, mediaType: string, size: number): void {
    if (!this.blobs.has(digest))
      this.blobs.set(digest, { digest, mediaType, size, offset: 0, status: 'waiting' });
  }

  status(digest: string, status: BlobStatus, offset?: number): void {
    const b = this.blobs.get(digest);
    if (!b) return;
    b.status = status;
    if (offset !== undefined) b.offset = offset;
    if (status === 'done' || status === 'exists') b.offset = b.size;
    this.flush();
  }

  bytes(digest: string, offset: number): void {
    const b = this.blobs.get(digest);
    if (!b) return;
    b.offset = offset;
    b.status = 'downloading';
    const now = Date.now();
    if (now - this.last >= this.intervalMs) this.flush();
    else this.pending ??= setTimeout(() => this.flush(), this.intervalMs - (now - this.last));
  }

  snapshot(): PullProgress {
    const p: PullProgress = {
      pullId: this.pullId,
      ref: this.ref,
      phase: this.phase,
      blobs: [...this.blobs.values()].map((b) => ({ ...b })),
    };
    if (this.digest) p.digest = this.digest;
    if (this.error) p.error = this.error;
    return p;
  }

  flush(): void {
    clearTimeout(this.pending);
    this.pending = undefined;
    this.last = Date.now();
    this.emit(this.snapshot());
  }

  close(): void {
    clearInterval(this.heartbeat);
    clearTimeout(this.pending);
    this.pending = undefined;
  }
}

/** Runs `fn` over items with at most `limit` at once; the first failure is rethrown after all settle. */
export async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !failure) {
      const i = next++;
      try {
        out[i] = await fn(items[i] as T, i);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
  return out;
}
