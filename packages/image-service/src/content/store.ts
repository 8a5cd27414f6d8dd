import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, type Descriptor, errors } from '@berth/api';
import type { Logger } from '@berth/kit';
import { keys, type Redis, withLock } from '@berth/kit';

/** One blob's record in Redis (keys.content). */
export interface ContentInfo {
  digest: string;
  size: number;
  mediaType: string;
  committedAt: string;
  /** gc.ref.content.* labels point at the blobs this one keeps alive. */
  labels: Record<string, string>;
}

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

const HEX = /^sha256:([a-f0-9]{64})$/;
/** Bytes gathered before one write to the ingest file. */
const WRITE_BATCH = 256 * 1024;

function hexOf(digest: string): string {
  const m = HEX.exec(digest);
  if (!m) throw errors.invalid(`digest "${digest}" is not sha256:<64 hex>`);
  return m[1] as string;
}

/**
 * The node's content-addressed store: blobs under blobs/sha256/<hex>, immutable once renamed in;
 * downloads go to ingest/<hex>/data under a per-blob Redis lock, are verified (size and sha256) and
 * committed by rename; records (size, type, gc refs) live in Redis.
 */
export class ContentStore {
  constructor(
    private readonly o: {
      blobsDir: string;
      ingestDir: string;
      redis: Redis;
      node: string;
      lockTtlMs: number;
      lockWaitMs: number;
      log?: Logger;
    },
  ) {}

  /** Path of a committed blob. */
  path(digest: string): string {
    return join(this.o.blobsDir, hexOf(digest));
  }

  /** Directory of a blob's in-progress download. */
  ingestPath(digest: string): string {
    return join(this.o.ingestDir, hexOf(digest));
  }

  /** Size of a committed blob, or undefined. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(digest))).size;
    } catch {
      return undefined;
    }
  }

  /** True when the blob is committed with the expected size. */
  async has(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<boolean> {
    return (await this.size(desc.digest)) === desc.size;
  }

  /** Reads a small committed blob (manifest, config) whole. */
  async read(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.path(digest));
    } catch {
      throw errors.notFound(`blob ${digest} not found in the content store`);
    }
  }

  /** Streams a committed blob. */
  stream(digest: string): NodeJS.ReadableStream {
    return createReadStream(this.path(digest));
  }

  /** The blob's Redis record, if any. */
  async info(digest: string): Promise<ContentInfo | undefined> {
    const h = await this.o.redis.hgetall(keys.content(this.o.node, digest));
    if (!h.size) return undefined;
    return {
      digest,
      size: Number(h.size),
      mediaType: h.mediaType ?? '',
      committedAt: h.committedAt ?? '',
      labels: h.labels ? (JSON.parse(h.labels) as Record<string, string>) : {},
    };
  }

  /** Writes (or completes) the blob's record; labels are merged. */
  async record(desc: Descriptor, labels: Record<string, string> = {}): Promise<void> {
    const key = keys.content(this.o.node, desc.digest);
    const old = await this.o.redis.hget(key, 'labels');
    const merged = { ...(old ? (JSON.parse(old) as Record<string, string>) : {}), ...labels };
    await this.o.redis
      .multi()
      .hset(key, {
        size: String(desc.size),
        mediaType: desc.mediaType,
        labels: JSON.stringify(merged),
      })
      .hsetnx(key, 'committedAt', new Date().toISOString())
      .sadd(keys.contents(this.o.node), desc.digest)
      .exec();
  }

  /**
   * Stores a small blob held in memory (manifest, index, config) after verifying it, and merges
   * its gc labels into the record.
   */
  async writeBuffer(desc: Descriptor, data: Buffer, labels: Record<string, string> = {}): Promise<void> {
    await this.locked(desc.digest, `blob ${desc.digest}`, () => this.writeVerified(desc, data, labels));
  }

  private async writeVerified(
    desc: Descriptor,
    data: Buffer,
    labels: Record<string, string> = {},
  ): Promise<void> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    if (digest !== desc.digest || data.length !== desc.size) {
      throw new BerthError(
        Code.DATA_LOSS,
        `blob ${desc.digest} failed verification: got ${digest} (${data.length} bytes)`,
      );
    }
    if (!(await this.has(desc))) {
      await mkdir(this.o.ingestDir, { recursive: true });
      await mkdir(this.o.blobsDir, { recursive: true });
      const tmp = join(this.o.ingestDir, `tmp-${randomUUID()}`);
      await writeFile(tmp, data, { mode: 0o600 });
      await rename(tmp, this.path(desc.digest));
    }
    await this.record(desc, labels);
  }

  /**
   * Fetches a blob once for the whole node: takes the blob's Redis lock (others wait), returns
   * `exists` if it is already committed, else downloads into ingest/<hex>/data (resuming a previous
   * partial download with Range when the source honours it), verifies size and digest, and commits
   * by rename. A mismatch removes the ingest and throws DATA_LOSS; nothing is committed.
   */
  async ingest(
    desc: Descriptor,
    source: BlobSource,
    opts: IngestOptions,
  ): Promise<{ status: 'exists' | 'done'; fetched: number }> {
    // The existence check is made under the lock too: GC deletes only while holding it.
    return this.locked(desc.digest, opts.what, async () => {
      if (await this.has(desc)) {
        await this.ensureRecord(desc);
        // A writer killed between its commit (rename) and removing its ingest leaves the ingest
        // behind; under the lock nobody else writes it, so it goes now.
        await rm(this.ingestPath(desc.digest), { recursive: true, force: true });
        return { status: 'exists' as const, fetched: 0 };
      }
      opts.onStart?.();
      const fetched = await this.download(desc, source, opts);
      return { status: 'done' as const, fetched };
    });
  }

  /** Runs `fn` holding the blob's node-wide lock. */
  locked<T>(digest: string, what: string, fn: () => Promise<T>): Promise<T> {
    return withLock(
      this.o.redis,
      keys.blobLock(this.o.node, digest),
      { ttlMs: this.o.lockTtlMs, waitMs: this.o.lockWaitMs, what },
      fn,
    );
  }

  /**
   * Returns a small blob (manifest, config) from the store, or fetches it with `fetch` (which must
   * verify it), stores it and returns it; under the blob lock so GC cannot delete it in between.
   */
  async getOrFetch(desc: Descriptor, what: string, fetch: () => Promise<Buffer>): Promise<Buffer> {
    return this.locked(desc.digest, what, async () => {
      if (await this.has(desc)) {
        await this.ensureRecord(desc);
        return this.read(desc.digest);
      }
      const body = await fetch();
      await this.writeVerified(desc, body);
      return body;
    });
  }

  private async ensureRecord(desc: Descriptor): Promise<void> {
    if (!(await this.o.redis.exists(keys.content(this.o.node, desc.digest)))) await this.record(desc);
  }

  private async download(desc: Descriptor, source: BlobSource, opts: IngestOptions): Promise<number> {
    const dir = this.ingestPath(desc.digest);
    await mkdir(dir, { recursive: true });
    await mkdir(this.o.blobsDir, { recursive: true });
    const dataPath = join(dir, 'data');
    await writeFile(
      join(dir, 'meta'),
      JSON.stringify({ digest: desc.digest, size: desc.size, startedAt: new Date().toISOString() }),
    );
    let hash = createHash('sha256');
    let offset = 0;
    const prior = await stat(dataPath).catch(() => undefined);
    if (prior && prior.size > 0 && prior.size <= desc.size) {
      // Re-hash what an interrupted download left, then ask only for the rest.
      for await (const chunk of createReadStream(dataPath)) hash.update(chunk as Buffer);
      offset = prior.size;
    }
    const abort = new AbortController();
    const onOuterAbort = () => abort.abort(opts.signal?.reason);
    opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
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
    const fh = await open(dataPath, offset > 0 ? 'r+' : 'w', 0o600);
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
      inflight = fh.writev(bufs, at);
    };
    try {
      if (offset < desc.size || desc.size === 0) {
        const src = await source(offset, abort.signal);
        if (src.offset !== offset) {
          // The server ignored Range and sent the whole blob: start over with it.
          hash = createHash('sha256');
          await fh.truncate(0);
          offset = 0;
          writePos = 0;
        }
        let pos = src.offset;
        for await (const chunk of src.body) {
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
      const digest = `sha256:${hash.digest('hex')}`;
      if (offset !== desc.size || digest !== desc.digest) {
        await fh.close().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
        throw new BerthError(
          Code.DATA_LOSS,
          `${opts.what} failed verification: expected ${desc.digest} (${desc.size} bytes), got ${digest} (${offset} bytes); nothing was stored`,
        );
      }
      await fh.datasync();
      await fh.close();
      await rename(dataPath, this.path(desc.digest));
      await this.record(desc);
      await rm(dir, { recursive: true, force: true });
      return fetched;
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.DATA_LOSS) {
        await inflight.catch(() => undefined);
        await fh.close().catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      } else {
        // Keep the verified prefix received so far, so the next attempt resumes after it.
        await flush().catch(() => undefined);
        await inflight.catch(() => undefined);
      }
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
      opts.signal?.removeEventListener('abort', onOuterAbort);
      await fh.close().catch(() => undefined);
    }
  }

  /**
   * Stores a blob from a stream whose digest may be unknown (import): hashes while writing to a temp
   * ingest file, verifies `expected` when given, and commits under the computed digest.
   */
  async writeStream(
    body: AsyncIterable<Uint8Array>,
    opts: {
      expected?: string;
      mediaType?: (head: Buffer) => string;
      what: string;
      /** Awaited with the digest before the commit (to lease it). */
      beforeCommit?: (digest: string) => Promise<void>;
    },
  ): Promise<Descriptor> {
    await mkdir(this.o.ingestDir, { recursive: true });
    await mkdir(this.o.blobsDir, { recursive: true });
    const tmp = join(this.o.ingestDir, `tmp-${randomUUID()}`);
    const hash = createHash('sha256');
    const fh = await open(tmp, 'w', 0o600);
    let size = 0;
    let head = Buffer.alloc(0);
    try {
      for await (const chunk of body) {
        if (head.length < 8) head = Buffer.concat([head, Buffer.from(chunk.subarray(0, 8 - head.length))]);
        hash.update(chunk);
        await fh.write(chunk);
        size += chunk.length;
      }
      await fh.datasync();
      await fh.close();
      const digest = `sha256:${hash.digest('hex')}`;
      if (opts.expected && digest !== opts.expected) {
        throw new BerthError(
          Code.DATA_LOSS,
          `${opts.what} failed verification: expected ${opts.expected}, got ${digest}`,
        );
      }
      const desc: Descriptor = {
        mediaType: opts.mediaType?.(head) ?? 'application/octet-stream',
        digest,
        size,
      };
      await opts.beforeCommit?.(digest);
      await this.locked(digest, opts.what, async () => {
        if (await this.has(desc)) await rm(tmp, { force: true });
        else await rename(tmp, this.path(digest));
        await this.record(desc);
      });
      return desc;
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /** Removes a committed blob and its record (GC only). */
  async delete(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
    await this.o.redis
      .multi()
      .del(keys.content(this.o.node, digest))
      .srem(keys.contents(this.o.node), digest)
      .exec();
  }
}
