import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { BerthError, Code, MediaType } from '@berth/api';
import { TarParser } from '@berth/tar';
import { LayerWriter } from './writer.js';

/** How a layer blob is compressed. */
export const Compression = { none: 'none', gzip: 'gzip', zstd: 'zstd' } as const;
export type Compression = (typeof Compression)[keyof typeof Compression];

const layerTypes: Record<string, Compression | undefined> = {
  [MediaType.ociLayer]: Compression.none,
  [MediaType.ociLayerGzip]: Compression.gzip,
  [MediaType.ociLayerZstd]: Compression.zstd,
  [MediaType.ociLayerNondistGzip]: Compression.gzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar': Compression.none,
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': Compression.zstd,
  [MediaType.dockerLayerGzip]: Compression.gzip,
  [MediaType.dockerLayerZstd]: Compression.zstd,
  [MediaType.dockerForeignLayerGzip]: Compression.gzip,
  'application/vnd.docker.image.rootfs.diff.tar': Compression.none,
};

/**
 * Decides the compression of a layer from its bytes (gzip 1f 8b 08, zstd 28 b5 2f fd or a
 * skippable frame 5? 2a 4d 18) as containerd does; the media type must still be a layer type.
 */
export function detectCompression(mediaType: string, head: Buffer): Compression {
  if (mediaType.endsWith('+encrypted')) {
    throw new BerthError(Code.UNIMPLEMENTED, `encrypted layers (${mediaType}) are not supported`);
  }
  if (!(mediaType in layerTypes)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `media type "${mediaType}" is not a layer type berth can unpack`,
    );
  }
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return Compression.gzip;
  if (head.length >= 4) {
    const le = head.readUInt32LE(0);
    if (le === 0xfd2fb528 || (le & 0xfffffff0) === 0x184d2a50) return Compression.zstd;
  }
  return Compression.none;
}

/** Options of applyLayer. */
export interface ApplyLayerOptions {
  /** The compressed (or plain) layer blob on disk. */
  blobPath: string;
  mediaType: string;
  /** Directory the layer is written into. */
  root: string;
  /** fs dirs of the parent snapshots, nearest first. */
  parents: readonly string[];
  /** Bound on the uncompressed bytes read: a decompression bomb stops here. */
  maxUncompressedBytes: number;
  /** What the layer is called in messages, e.g. its digest. */
  what: string;
  signal?: AbortSignal;
}

/** What applying a layer measured. */
export interface ApplyResult {
  /** sha256 of the whole uncompressed stream, as config rootfs.diff_ids lists it. */
  diffId: string;
  compression: Compression;
  uncompressedBytes: number;
  entries: number;
  inodes: number;
}

interface Source {
  stream: Readable;
  /** Resolves once a helper process exited cleanly; rejects with its error otherwise. */
  done: () => Promise<void>;
  destroy: () => void;
}

/**
 * Opens the blob once and reads its first bytes (the magic) from that same descriptor, then hands
 * the whole stream on with them put back: a pipe serves as well as a file, and the blob read is
 * the one whose magic was checked.
 */
async function openBlob(path: string): Promise<{ head: Buffer; file: Readable }> {
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT')
      throw new BerthError(Code.NOT_FOUND, `layer blob ${path} not found in the content store`);
    throw err;
  });
  const buf = Buffer.alloc(8);
  let got = 0;
  try {
    for (;;) {
      // position null: read on from the descriptor's offset, which a pipe also has.
      const { bytesRead } = await fh.read(buf, got, buf.length - got, null);
      got += bytesRead;
      if (bytesRead === 0 || got === buf.length) break;
    }
  } catch (err) {
    await fh.close();
    throw err;
  }
  const head = buf.subarray(0, got);
  const file = fh.createReadStream({ highWaterMark: 1 << 20 });
  if (got > 0) file.unshift(head);
  return { head, file };
}

function openSource(file: Readable, compression: Compression): Source {
  if (compression === Compression.none) {
    return { stream: file, done: async () => undefined, destroy: () => file.destroy() };
  }
  if (compression === Compression.gzip) {
    const gunzip = createGunzip({ chunkSize: 256 << 10 });
    file.on('error', (err) => gunzip.destroy(err));
    file.pipe(gunzip);
    return {
      stream: gunzip,
      done: async () => undefined,
      destroy: () => {
        file.destroy();
        gunzip.destroy();
      },
    };
  }
  // Node 20's zlib has no zstd: one `zstd -dc` process per layer streams it (the window is
  // bounded by zstd's own default memory limit of 128 MiB).
  const proc = spawn('zstd', ['-d', '-c', '-q', '--no-progress'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // zstd may stop reading early (corrupt input): its exit status tells, not the broken pipe.
  proc.stdin.on('error', () => undefined);
  file.on('error', () => proc.stdin.destroy());
  file.pipe(proc.stdin);
  let stderr = '';
  proc.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 4096) stderr += b.toString();
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    proc.on('error', (err) =>
      reject(
        new BerthError(
          Code.FAILED_PRECONDITION,
          `cannot run zstd to decompress a zstd layer: ${err.message}`,
          {
            cause: err,
          },
        ),
      ),
    );
    proc.on('close', (code) => resolve(code));
  });
  exited.catch(() => undefined);
  return {
    stream: proc.stdout,
    done: async () => {
      const code = await exited;
      if (code !== 0) {
        throw new BerthError(
          Code.INVALID_ARGUMENT,
          `zstd could not decompress the layer (exit ${code}): ${stderr.trim()}`,
        );
      }
    },
    destroy: () => {
      file.destroy();
      proc.stdout.destroy();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

/**
 * Decompresses a layer blob as a stream and writes it into `root`, hashing the uncompressed
 * bytes on the way (the DiffID). The stream is read to its end, trailing padding included, so the
 * digest covers exactly what rootfs.diff_ids names. Never holds more than one chunk in memory.
 */
export async function applyLayer(opts: ApplyLayerOptions): Promise<ApplyResult> {
  const blob = await openBlob(opts.blobPath);
  let compression: Compression;
  try {
    compression = detectCompression(opts.mediaType, blob.head);
  } catch (err) {
    blob.file.destroy();
    throw err;
  }
  const writer = new LayerWriter({ root: opts.root, parents: opts.parents, what: opts.what });
  const parser = new TarParser(writer);
  const hash = createHash('sha256');
  const src = openSource(blob.file, compression);
  const stop = stopped(opts);
  let total = 0;
  try {
    const chunks = (src.stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    for (;;) {
      // Raced with the abort: a stalled stream (a slow disk, a pipe) must not delay stopping.
      const next = await Promise.race([stop.promise, chunks.next()]);
      // A chunk already buffered can win the race against an abort that came first.
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (next.done) break;
      const chunk = next.value;
      total += chunk.length;
      if (total > opts.maxUncompressedBytes) {
        throw new BerthError(
          Code.RESOURCE_EXHAUSTED,
          `${opts.what}: uncompressed size exceeds the limit of ${opts.maxUncompressedBytes} bytes (services.snapshot-service.maxLayerUncompressedBytes)`,
        );
      }
      hash.update(chunk);
      parser.write(chunk);
    }
    await src.done();
    parser.end();
    writer.finish();
  } catch (err) {
    if (opts.signal?.aborted) {
      const why = (opts.signal.reason as Error | undefined)?.message ?? 'service stopping';
      throw new BerthError(Code.ABORTED, `${opts.what}: unpack aborted: ${why}`, { cause: err });
    }
    if (err instanceof BerthError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' || e.code === 'ERR_STREAM_PREMATURE_CLOSE') {
      throw new BerthError(Code.INVALID_ARGUMENT, `${opts.what}: corrupt compressed stream: ${e.message}`, {
        cause: err,
      });
    }
    throw err;
  } finally {
    stop.dispose();
    src.destroy();
    writer.close();
  }
  return {
    diffId: `sha256:${hash.digest('hex')}`,
    compression,
    uncompressedBytes: total,
    entries: parser.entries,
    inodes: writer.inodes,
  };
}

/** A promise that rejects when the signal aborts (never otherwise), and its listener's removal. */
function stopped(opts: ApplyLayerOptions): { promise: Promise<never>; dispose: () => void } {
  const signal = opts.signal;
  if (!signal) return { promise: new Promise<never>(() => undefined), dispose: () => undefined };
  let onAbort: () => void = () => undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason ?? new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}
