import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
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

function openSource(path: string, compression: Compression): Source {
  const file = createReadStream(path, { highWaterMark: 1 << 20 });
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
  const proc = spawn('zstd', ['-d', '-c', '-q', '--no-progress', path], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
      proc.stdout.destroy();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

async function readHead(path: string): Promise<Buffer> {
  const fh = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT')
      throw new BerthError(Code.NOT_FOUND, `layer blob ${path} not found in the content store`);
    throw err;
  });
  try {
    const buf = Buffer.alloc(8);
    const { bytesRead } = await fh.read(buf, 0, 8, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Decompresses a layer blob as a stream and writes it into `root`, hashing the uncompressed
 * bytes on the way (the DiffID). The stream is read to its end, trailing padding included, so the
 * digest covers exactly what rootfs.diff_ids names. Never holds more than one chunk in memory.
 */
export async function applyLayer(opts: ApplyLayerOptions): Promise<ApplyResult> {
  const compression = detectCompression(opts.mediaType, await readHead(opts.blobPath));
  const writer = new LayerWriter({ root: opts.root, parents: opts.parents, what: opts.what });
  const parser = new TarParser(writer);
  const hash = createHash('sha256');
  const src = openSource(opts.blobPath, compression);
  let total = 0;
  try {
    for await (const chunk of src.stream as AsyncIterable<Buffer>) {
      if (opts.signal?.aborted) {
        throw new BerthError(Code.ABORTED, `${opts.what}: unpack aborted (lock lost or service stopping)`);
      }
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
    if (err instanceof BerthError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'Z_DATA_ERROR' || e.code === 'Z_BUF_ERROR' || e.code === 'ERR_STREAM_PREMATURE_CLOSE') {
      throw new BerthError(Code.INVALID_ARGUMENT, `${opts.what}: corrupt compressed stream: ${e.message}`, {
        cause: err,
      });
    }
    throw err;
  } finally {
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
