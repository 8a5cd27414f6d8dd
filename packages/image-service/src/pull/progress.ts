import type { BlobStatus, PullProgress } from '@berth/api';

type Blob = PullProgress['blobs'][number];

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

  constructor(
    private readonly pullId: string,
    private readonly ref: string,
    private readonly emit: (p: PullProgress) => void,
    private readonly intervalMs = 200,
  ) {}

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
