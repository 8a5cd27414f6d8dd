import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code, type Descriptor, errors } from '@berth/api';
import type { Logger } from '@berth/kit';
import {
  diskError,
  type Fence,
  fenceCheckLua,
  fencedError,
  isFenced,
  keys,
  type Lock,
  type Redis,
  redisScript,
  withLock,
  writeFully,
} from '@berth/kit';
import { withSpan } from '@berth/kit/tracing';
import { type BlobSource, clearIngest, downloadBlob, type IngestOptions } from './download.js';
import { contentMetrics } from './metrics.js';

export type { BlobSource, IngestOptions } from './download.js';

// The record of a blob is written in one script that first checks the blob lock's token: a writer
// whose lock expired (and was maybe taken by another) cannot write it. Labels merge in the script
// too, so two writers' labels are never lost to a read-modify-write race.
const RECORD = redisScript(
  'content record',
  `${fenceCheckLua(3, 1)}
local old = redis.call('hget', KEYS[1], 'labels')
local merged = {}
if old then merged = cjson.decode(old) end
for k, v in pairs(cjson.decode(ARGV[5])) do merged[k] = v end
redis.call('hset', KEYS[1], 'size', ARGV[3], 'mediaType', ARGV[4], 'labels', cjson.encode(merged))
redis.call('hsetnx', KEYS[1], 'committedAt', ARGV[6])
redis.call('sadd', KEYS[2], ARGV[2])
return 'OK'`,
);

// GC forgets a blob only while it still holds the blob's lock.
const FORGET = redisScript(
  'content forget',
  `${fenceCheckLua(3, 1)}
redis.call('del', KEYS[1])
redis.call('srem', KEYS[2], ARGV[2])
return 'OK'`,
);

/** One blob's record in Redis (keys.content). */
export interface ContentInfo {
  digest: string;
  size: number;
  mediaType: string;
  committedAt: string;
  /** gc.ref.content.* labels point at the blobs this one keeps alive. */
  labels: Record<string, string>;
}

const HEX = /^sha256:([a-f0-9]{64})$/;

function hexOf(digest: string): string {
  const m = HEX.exec(digest);
  if (!m) throw errors.invalid(`digest "${digest}" is not sha256:<64 hex>`);
  return m[1] as string;
}

/**
 * The node's content-addressed store: blobs under blobs/sha256/<hex>, immutable once renamed in;
 * downloads go to ingest/<hex>/ under a per-blob Redis lock, are verified (size and sha256) and
 * committed by rename; records (size, type, gc refs) live in Redis and are written only while the
 * blob lock is still held (checked in the same script), which makes the record the commit point.
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

  /**
   * Writes (or completes) the blob's record, labels merged, in one Redis script that first checks
   * that `fence` (the blob lock) is still held: ABORTED naming `what` when it is not.
   */
  async record(
    desc: Descriptor,
    fence: Fence,
    what: string,
    labels: Record<string, string> = {},
  ): Promise<void> {
    try {
      await this.o.redis.eval(
        RECORD,
        3,
        keys.content(this.o.node, desc.digest),
        keys.contents(this.o.node),
        fence.key,
        fence.token,
        desc.digest,
        String(desc.size),
        desc.mediaType,
        JSON.stringify(labels),
        new Date().toISOString(),
      );
    } catch (err) {
      if (isFenced(err)) throw fencedError(what, err);
      throw err;
    }
  }

  /**
   * Stores a small blob held in memory (manifest, index, config) after verifying it, and merges
   * its gc labels into the record.
   */
  async writeBuffer(desc: Descriptor, data: Buffer, labels: Record<string, string> = {}): Promise<void> {
    const what = `blob ${desc.digest}`;
    await this.locked(desc.digest, what, (lock) => this.writeVerified(desc, data, lock, what, labels));
  }

  private async writeVerified(
    desc: Descriptor,
    data: Buffer,
    lock: Lock,
    what: string,
    labels: Record<string, string> = {},
  ): Promise<void> {
    const attrs = { 'berth.digest': desc.digest, 'berth.blob.size': desc.size };
    await withSpan('digest verify', attrs, async () => {
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      if (digest !== desc.digest || data.length !== desc.size) {
        throw new BerthError(
          Code.DATA_LOSS,
          `blob ${desc.digest} failed verification: got ${digest} (${data.length} bytes)`,
        );
      }
    });
    await withSpan('blob commit', attrs, () => this.commitBuffer(desc, data, lock, what, labels));
  }

  private async commitBuffer(
    desc: Descriptor,
    data: Buffer,
    lock: Lock,
    what: string,
    labels: Record<string, string>,
  ): Promise<void> {
    if (!(await this.has(desc))) {
      const tmp = join(this.o.ingestDir, `tmp-${randomUUID()}`);
      try {
        await mkdir(this.o.ingestDir, { recursive: true });
        await mkdir(this.o.blobsDir, { recursive: true });
        await writeFile(tmp, data, { mode: 0o600 });
        // Checked right before the rename; the record script checks again (see download.ts).
        if (!(await this.stillHeld(lock))) throw fencedError(what);
        await rename(tmp, this.path(desc.digest));
      } catch (err) {
        throw diskError(err, { what, path: tmp, after: 'nothing was stored' }) ?? err;
      } finally {
        await rm(tmp, { force: true });
      }
    }
    await this.record(desc, lock, what, labels);
  }

  /**
   * Fetches a blob once for the whole node: takes the blob's Redis lock (others wait), returns
   * `exists` if it is already committed, else downloads it (see downloadBlob: resumable, verified,
   * stopped when the lock is lost, committed only while the lock holds).
   */
  async ingest(
    desc: Descriptor,
    source: BlobSource,
    opts: IngestOptions,
  ): Promise<{ status: 'exists' | 'done'; fetched: number }> {
    const attrs = { 'berth.digest': desc.digest, 'berth.blob.size': desc.size };
    return withSpan('blob ingest', attrs, async (span) => {
      const out = await this.ingestLocked(desc, source, opts);
      span.setAttributes({ 'berth.blob.status': out.status, 'berth.blob.fetched_bytes': out.fetched });
      return out;
    });
  }

  private ingestLocked(
    desc: Descriptor,
    source: BlobSource,
    opts: IngestOptions,
  ): Promise<{ status: 'exists' | 'done'; fetched: number }> {
    // The existence check is made under the lock too: GC deletes only while holding it.
    return this.locked(desc.digest, opts.what, async (lock) => {
      if (await this.has(desc)) {
        await this.ensureRecord(desc, lock, opts.what);
        // A writer killed between its commit (rename) and removing its ingest leaves the ingest
        // behind; under the lock nobody else writes it, so it goes now.
        await clearIngest(this.ingestPath(desc.digest), lock.fence);
        contentMetrics().deduplicated();
        return { status: 'exists' as const, fetched: 0 };
      }
      opts.onStart?.();
      await mkdir(this.o.blobsDir, { recursive: true }).catch((err: unknown) => {
        throw diskError(err, { what: opts.what, path: this.o.blobsDir }) ?? err;
      });
      const fetched = await downloadBlob({
        desc,
        source,
        opts,
        dir: this.ingestPath(desc.digest),
        blobPath: this.path(desc.digest),
        lock,
        record: () => this.record(desc, lock, opts.what),
      });
      contentMetrics().pulled(fetched);
      return { status: 'done' as const, fetched };
    });
  }

  /** Runs `fn` holding the blob's node-wide lock (renewed; `lock.lost` fires if it is lost). */
  locked<T>(digest: string, what: string, fn: (lock: Lock) => Promise<T>): Promise<T> {
    return withLock(
      this.o.redis,
      keys.blobLock(this.o.node, digest),
      { ttlMs: this.o.lockTtlMs, waitMs: this.o.lockWaitMs, what },
      fn,
    );
  }

  /**
   * Returns a small blob (manifest, config) from the store, or fetches it with `fetch` (which must
   * verify it, and stop when the signal it is given aborts: the lock was lost), stores it and
   * returns it; under the blob lock so GC cannot delete it in between.
   */
  async getOrFetch(
    desc: Descriptor,
    what: string,
    fetch: (lost: AbortSignal | undefined) => Promise<Buffer>,
  ): Promise<Buffer> {
    return this.locked(desc.digest, what, async (lock) => {
      if (await this.has(desc)) {
        await this.ensureRecord(desc, lock, what);
        contentMetrics().deduplicated();
        return this.read(desc.digest);
      }
      let body: Buffer;
      try {
        body = await fetch(lock.lost);
      } catch (err) {
        if (lock.lost?.aborted) throw lock.lost.reason;
        throw err;
      }
      await this.writeVerified(desc, body, lock, what);
      contentMetrics().pulled(body.length);
      return body;
    });
  }

  private async ensureRecord(desc: Descriptor, lock: Lock, what: string): Promise<void> {
    if (!(await this.o.redis.exists(keys.content(this.o.node, desc.digest))))
      await this.record(desc, lock, what);
  }

  /** Checks the lock right before a file is renamed in, extending it for the record write after. */
  private async stillHeld(lock: Lock): Promise<boolean> {
    return !lock.lost?.aborted && (await lock.renew());
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
    const tmp = join(this.o.ingestDir, `tmp-${randomUUID()}`);
    const fh = await (async () => {
      await mkdir(this.o.ingestDir, { recursive: true });
      await mkdir(this.o.blobsDir, { recursive: true });
      return open(tmp, 'w', 0o600);
    })().catch(async (err: unknown) => {
      await rm(tmp, { force: true });
      throw diskError(err, { what: opts.what, path: tmp, after: 'nothing was stored' }) ?? err;
    });
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    try {
      for await (const chunk of body) {
        if (head.length < 8) head = Buffer.concat([head, Buffer.from(chunk.subarray(0, 8 - head.length))]);
        hash.update(chunk);
        await writeFully(fh, [Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)], null);
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
      await this.locked(digest, opts.what, async (lock) => {
        if (await this.has(desc)) await rm(tmp, { force: true });
        else if (!(await this.stillHeld(lock))) throw fencedError(opts.what);
        else await rename(tmp, this.path(digest));
        await this.record(desc, lock, opts.what);
      });
      return desc;
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw diskError(err, { what: opts.what, path: tmp, after: 'its partial data was removed' }) ?? err;
    }
  }

  /**
   * Removes a committed blob and its record (GC only, holding the blob's lock): the record goes
   * first, in a script that checks the lock, so a GC whose lock expired deletes nothing.
   * Returns false when the lock was lost.
   */
  async delete(digest: string, fence: Fence): Promise<boolean> {
    try {
      await this.o.redis.eval(
        FORGET,
        3,
        keys.content(this.o.node, digest),
        keys.contents(this.o.node),
        fence.key,
        fence.token,
        digest,
      );
    } catch (err) {
      if (isFenced(err)) return false;
      throw err;
    }
    await rm(this.path(digest), { force: true });
    return true;
  }
}
