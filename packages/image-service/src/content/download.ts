import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, type Descriptor } from '@berth/api';
import { diskError, diskFaultOf, fencedError, type Lock, writeFully } from '@berth/kit';
import { withSpan } from '@berth/kit/tracing';

/** A source of blob bytes that can start at an offset (HTTP Range), as a pull's fetcher. */
export type BlobSource = (
  offset: number,
  signal: AbortSignal,
) => Promise<{ offset: number; body: AsyncIterable<Uint8Array> }>;

/** Options of one ingest. */
export interface IngestOptions {
  /** Name of the object in messages (`blob sha256:… of "busybox"`). */
  what: string;
  /** Fails the download with DEADLINE_EXCEEDED when no byte arrives for this long. */
  progressTimeoutMs: number;
  onProgress?: (offset: number) => void;
  /** Called once the lock is held and the download really starts. */
  onStart?: () => void;
  signal?: AbortSignal;
}

/** One download into the ingest directory of a blob, under its lock. */
export interface DownloadJob {
  desc: Descriptor;
  source: BlobSource;
  opts: IngestOptions;
  /** The blob's ingest directory (ingest/<hex>). */
  dir: string;
  /** Where the verified blob is renamed to (blobs/sha256/<hex>). */
  blobPath: string;
  /** The blob lock this download holds (from withLock: its `lost` signal stops the download). */
  lock: Lock;
  /** Writes the blob's record in one script that checks the lock's token (throws ABORTED if not). */
  record: () => Promise<void>;
}

/** Bytes gathered before one write to the ingest file. */
const WRITE_BATCH = 256 * 1024;
/** The verified prefix a stopped download left for the next one (closed: nobody writes it). */
const RESUME = 'data';
const HOLDER = /^data-(\d+)$/;

/**
 * Removes what holders up to fence `upTo` left in an ingest directory (the resume prefix, meta and
 * their own files), then the directory if that emptied it. Never touches the file of a later
 * holder: a writer that lost its lock without noticing yet can only clean up after older ones.
 */
export async function clearIngest(dir: string, upTo: number): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = HOLDER.exec(name);
    if (name === RESUME || name === 'meta' || (m && Number(m[1]) <= upTo)) {
      await rm(join(dir, name), { force: true });
    }
  }
  await rmdir(dir).catch(() => undefined);
}

/**
 * Downloads a blob into ingest/<hex>/data-<fence> (a file of this holder alone), resuming from the
 * prefix a stopped download published as ingest/<hex>/data, verifies size and sha256, and commits:
 * the lock is checked (and extended) right before the rename into the blob store, and the record
 * write checks it again in the same Redis script. Losing the lock aborts the fetch and the writes
 * and removes this holder's file at once. A full or failing disk (ENOSPC, EDQUOT, EIO) fails with
 * RESOURCE_EXHAUSTED naming the file, after removing everything of the ingest up to this holder's
 * fence: a prefix kept for resuming would only hold the space the node needs to recover (Redis's
 * AOF lives on the same disk by default), and GC takes ingests only after an hour. Returns the
 * bytes fetched.
 */
export async function downloadBlob(j: DownloadJob): Promise<number> {
  try {
    return await download(j);
  } catch (err) {
    const full = diskError(err, {
      what: j.opts.what,
      path: join(j.dir, `data-${j.lock.fence}`),
      after: 'the partial download was removed',
    });
    // Stopped because another download of the same pull met the full disk: a prefix kept for
    // resuming would hold space just the same.
    const stoppedByFull = !full && diskFaultOf(j.opts.signal?.reason) !== undefined;
    if (!full && !stoppedByFull) throw err;
    // Under a lost lock the directory may be the next holder's: download() removed our file only.
    if (!j.lock.lost?.aborted) await clearIngest(j.dir, j.lock.fence);
    throw full ?? err;
  }
}

async function download(j: DownloadJob): Promise<number> {
  const { desc, opts, dir, lock } = j;
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'meta'),
    JSON.stringify({ digest: desc.digest, size: desc.size, startedAt: new Date().toISOString() }),
  );
  // Each holder writes its own file, named by its fencing token: a holder that lost its lock and has
  // not noticed yet can neither write into nor delete the next holder's download.
  const mine = join(dir, `data-${lock.fence}`);
  await adoptOlder(dir, lock.fence, mine);
  let hash = createHash('sha256');
  let offset = 0;
  const prior = await stat(mine).catch(() => undefined);
  if (prior && prior.size > 0 && prior.size <= desc.size) {
    // Re-hash what an interrupted download left, then ask only for the rest.
    for await (const chunk of createReadStream(mine)) hash.update(chunk as Buffer);
    offset = prior.size;
  }
  const abort = new AbortController();
  const stops = [opts.signal, lock.lost].filter((s): s is AbortSignal => s !== undefined);
  const onStop = (e: Event) => abort.abort((e.target as AbortSignal).reason);
  for (const s of stops) s.addEventListener('abort', onStop, { once: true });
  if (lock.lost?.aborted) abort.abort(lock.lost.reason);
  let stalled = false;
  let lastByte = Date.now();
  // One coarse timer instead of one per chunk: it checks when the last byte came.
  const timer = setInterval(
    () => {
      if (Date.now() - lastByte >= opts.progressTimeoutMs) {
        stalled = true;
        abort.abort();
      }
    },
    Math.max(50, Math.min(1000, opts.progressTimeoutMs / 5)),
  );
  let fetched = 0;
  const fh = await open(mine, offset > 0 ? 'r+' : 'w', 0o600);
  let closed = false;
  const close = async () => {
    if (!closed) {
      closed = true;
      await fh.close().catch(() => undefined);
    }
  };
  // Chunks are batched into large writes, and one write is in flight while the next batch is read.
  let batch: Buffer[] = [];
  let batchLen = 0;
  let writePos = offset;
  let inflight: Promise<unknown> = Promise.resolve();
  const flush = async () => {
    await inflight;
    if (batchLen === 0) return;
    const bufs = batch;
    const at = writePos;
    writePos += batchLen;
    batch = [];
    batchLen = 0;
    inflight = writeFully(fh, bufs, at);
    // A failed write (ENOSPC) is awaited by the next flush; until then this keeps it from being an
    // unhandled rejection, which would end the whole process.
    inflight.catch(() => undefined);
  };
  let verified = false;
  try {
    if (offset < desc.size || desc.size === 0) {
      const src = await j.source(offset, abort.signal);
      if (src.offset !== offset) {
        // The server ignored Range and sent the whole blob: start over with it.
        hash = createHash('sha256');
        await fh.truncate(0);
        offset = 0;
        writePos = 0;
      }
      let pos = src.offset;
      for await (const chunk of src.body) {
        // A lost lock stops the writes even if bytes keep coming faster than the abort lands.
        if (abort.signal.aborted) throw abort.signal.reason ?? new Error('aborted');
        lastByte = Date.now();
        if (pos + chunk.length > desc.size) {
          throw new BerthError(
            Code.DATA_LOSS,
            `${opts.what} failed verification: the registry sent more than ${desc.size} bytes`,
          );
        }
        hash.update(chunk);
        batch.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        batchLen += chunk.length;
        pos += chunk.length;
        fetched += chunk.length;
        if (batchLen >= WRITE_BATCH) await flush();
        opts.onProgress?.(pos);
      }
      await flush();
      await inflight;
      offset = pos;
    }
    clearInterval(timer);
    const attrs = { 'berth.digest': desc.digest, 'berth.blob.size': desc.size };
    await withSpan('digest verify', attrs, async () => {
      const digest = `sha256:${hash.digest('hex')}`;
      if (offset !== desc.size || digest !== desc.digest) {
        throw new BerthError(
          Code.DATA_LOSS,
          `${opts.what} failed verification: expected ${desc.digest} (${desc.size} bytes), got ${digest} (${offset} bytes); nothing was stored`,
        );
      }
    });
    verified = true;
    await withSpan('blob commit', attrs, async () => {
      await fh.datasync();
      await close();
      // The fence right before the rename: renew checks our token and extends the expiry, so the
      // record write below normally lands well within the ttl. The record script checks it again
      // and is the point of truth; a rename by a holder fenced out in between only puts these
      // verified bytes at their own content address, where any later holder would put the same.
      if (lock.lost?.aborted || !(await lock.renew())) throw fencedError(opts.what);
      await rename(mine, j.blobPath);
      await j.record();
      await clearIngest(dir, lock.fence);
    });
    return fetched;
  } catch (err) {
    await inflight.catch(() => undefined);
    const lost = lock.lost?.aborted === true;
    const fenced = err instanceof BerthError && err.code === Code.ABORTED && verified;
    if (lost || fenced || (err instanceof BerthError && err.code === Code.DATA_LOSS)) {
      // Nothing of ours may outlive a lost lock or a failed verification: remove our file now.
      // Only our file once the lock is gone: the directory may already be the next holder's.
      await close();
      await rm(mine, { force: true });
      if (!lost && !fenced) await clearIngest(dir, lock.fence);
      if (lost && !fenced) {
        const reason = lock.lost?.reason as Error;
        throw new BerthError(
          Code.ABORTED,
          `${reason.message}; the download of ${opts.what} stopped at byte ${offset + fetched} of ${desc.size} and its partial data was removed`,
          { cause: err },
        );
      }
      throw err;
    }
    if (diskFaultOf(err)) {
      // No prefix is kept on a full disk: downloadBlob removes the whole ingest.
      await close();
      throw err;
    }
    // Keep the verified prefix received so far, closed and published, so the next attempt resumes.
    await flush().catch(() => undefined);
    await inflight.catch(() => undefined);
    await close();
    await rename(mine, join(dir, RESUME)).catch(() => undefined);
    if (!stalled && !(err instanceof BerthError) && !opts.signal?.aborted) {
      // A connection cut mid-body (undici says "terminated"): name the blob and where it stopped.
      throw new BerthError(
        Code.UNAVAILABLE,
        `${opts.what}: download interrupted at byte ${offset + fetched} of ${desc.size}: ${(err as Error).message}; the next pull resumes it`,
        { cause: err },
      );
    }
    if (stalled) {
      throw new BerthError(
        Code.DEADLINE_EXCEEDED,
        `${opts.what}: no progress for ${opts.progressTimeoutMs} ms at byte ${offset + fetched} of ${desc.size}; download aborted`,
      );
    }
    throw err;
  } finally {
    clearInterval(timer);
    for (const s of stops) s.removeEventListener('abort', onStop);
    await close();
  }
}

/**
 * Takes over the longest prefix earlier holders left (a stopped download's `data`, or the file of a
 * holder that crashed or was fenced out) as this holder's file, and removes the others. Safe even if
 * a fenced-out holder has one write still in flight into it: every holder writes the same bytes of
 * the same blob at the same offsets, and the whole blob is verified against its digest before it is
 * committed.
 */
async function adoptOlder(dir: string, fence: number, mine: string): Promise<void> {
  const older: { path: string; size: number }[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = HOLDER.exec(name);
    if (name !== RESUME && !(m && Number(m[1]) < fence)) continue;
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (st?.isFile()) older.push({ path, size: st.size });
  }
  older.sort((a, b) => b.size - a.size);
  const [longest, ...rest] = older;
  for (const f of rest) await rm(f.path, { force: true });
  if (longest) await rename(longest.path, mine).catch(() => undefined);
}
