import { BerthError, Code, type ImageRecord, type PullImageRequest, toBerthError } from '@berth/api';
import { type CriAuthConfig, registryAuthOf } from './auth.js';
import { type CriImage, toCriImages } from './cri-image.js';
import type { ImagePort, SnapshotPort } from './ports.js';
import { namesIn, namesOf, resolveImage } from './resolve.js';

/** The CRI image operations over berth's image- and snapshot-services (no gRPC, no NATS). */
export interface ImageOpsDeps {
  images: ImagePort;
  snapshots: SnapshotPort;
  /** Directory of the node's snapshots: the image filesystem the kubelet watches. */
  snapshotsDir: string;
  /** Names of images reported `pinned` (the sandbox image), kept from the kubelet's image GC. */
  pinned?: ReadonlySet<string>;
}

/** Lists images, one per id; a filter with an image spec narrows it to that image (or none). */
export async function listImages(d: ImageOpsDeps, filterSpec?: string): Promise<CriImage[]> {
  return toCriImages(await listRecords(d, filterSpec), d.pinned);
}

/** The image records ListImages folds into CRI images (see listImages). */
export async function listRecords(d: ImageOpsDeps, filterSpec?: string): Promise<readonly ImageRecord[]> {
  if (filterSpec) {
    const rec = await resolveImage(d.images, filterSpec);
    return rec ? namesOf(d.images, rec.configDigest) : [];
  }
  return d.images.list();
}

/**
 * listRecords() when the images port holds the answer in memory and nothing it holds is being
 * refreshed; undefined when only listRecords can tell (a filter naming an image it does not hold).
 */
export function listRecordsNow(d: ImageOpsDeps, filterSpec?: string): readonly ImageRecord[] | undefined {
  if (!filterSpec) return d.images.listNow?.();
  return imageStatusNow(d, filterSpec)?.names;
}

/**
 * The image a spec names: its record and every record (name) of the same id, or undefined when it
 * is not on this node; `toCriImages(names, pinned)` folds them into its CRI image.
 */
export async function imageStatus(
  d: ImageOpsDeps,
  spec: string,
): Promise<{ record: ImageRecord; names: ImageRecord[] } | undefined> {
  const rec = await resolveImage(d.images, spec);
  if (!rec) return undefined;
  return imageNamed(rec, await namesOf(d.images, rec.configDigest));
}

/** An image found: its record and the names of its id (the record's alone when none is listed). */
function imageNamed(rec: ImageRecord, names: ImageRecord[]): { record: ImageRecord; names: ImageRecord[] } {
  return { record: rec, names: names.length > 0 ? names : [rec] };
}

/**
 * imageStatus() when the images port holds the answer in memory and nothing it holds is being
 * refreshed (the same records imageStatus would read); undefined when only imageStatus can tell,
 * an absent image included (it may be named in a way only the image-service resolves).
 */
export function imageStatusNow(
  d: ImageOpsDeps,
  spec: string,
): { record: ImageRecord; names: ImageRecord[] } | undefined {
  if (spec === '') return undefined;
  const rec = d.images.getNow?.(spec);
  const all = rec && d.images.listNow?.();
  if (!rec || !all) return undefined;
  return imageNamed(rec, namesIn(all, rec.configDigest));
}

/**
 * Pulls and unpacks an image, returning its id (config digest) as containerd's image_ref.
 * An image that arrived but could not be unpacked fails the pull: the kubelet would next create
 * a container on it, which needs the snapshots.
 */
export async function pullImage(d: ImageOpsDeps, spec: string, auth?: CriAuthConfig | null): Promise<string> {
  if (spec === '') throw new BerthError(Code.INVALID_ARGUMENT, 'pull image: the image spec is empty');
  const req: PullImageRequest = { ref: spec, unpack: true };
  const credentials = registryAuthOf(auth, spec);
  if (credentials) req.auth = credentials;
  let reply: Awaited<ReturnType<ImagePort['pull']>>;
  try {
    reply = await d.images.pull(req);
  } catch (err) {
    throw naming(err, spec, 'pull image');
  }
  if (reply.unpack !== 'done') {
    throw new BerthError(
      Code.INTERNAL,
      `pull image "${spec}": pulled but not unpacked (${reply.unpack}${reply.unpackError ? `: ${reply.unpackError}` : ''})`,
    );
  }
  return reply.image.configDigest;
}

/**
 * Removes an image with every name resolving to the same id (the CRI's rule). Idempotent: an
 * absent image, or a name another caller removed meanwhile, is not an error. As containerd's CRI,
 * whatever container uses it (the image-service's in-use check is skipped: `force`): a container
 * keeps its root filesystem, since snapshot GC keeps every active snapshot and its parents, and
 * the chain of a container whose CreateContainer answered before its snapshot was prepared (its
 * record claims it: task-service `claimed-chains`); the kubelet's own image GC asks only for
 * images no container uses. Garbage collection runs
 * once, after the last name, and after the reply (as containerd's CRI leaves content removal to
 * its collector): the image-service notes it in Redis first, so a crash cannot lose it.
 */
export async function removeImage(d: ImageOpsDeps, spec: string): Promise<void> {
  const rec = await resolveImage(d.images, spec);
  if (!rec) return;
  const records = await namesOf(d.images, rec.configDigest);
  if (records.length === 0) records.push(rec);
  const names = records.map((r) => r.name);
  for (const [i, name] of names.entries()) {
    try {
      const gc = i === names.length - 1 ? { gcLater: true } : { gc: false };
      await d.images.remove({ name, ...gc, force: true });
    } catch (err) {
      if (toBerthError(err).code !== Code.NOT_FOUND) throw naming(err, spec, 'remove image');
    }
  }
}

/** Usage of the image filesystem: the content store plus the committed (image layer) snapshots. */
export interface ImageFsUsage {
  mountpoint: string;
  usedBytes: number;
  inodesUsed: number;
  timestampNs: bigint;
}

/**
 * Measures what images occupy on this node: blobs (image-service `usage`) and the committed
 * snapshots their layers were unpacked into (snapshot-service `usage` of each), reported against
 * the snapshots directory as containerd reports its snapshotter root.
 */
export async function imageFsUsage(d: ImageOpsDeps): Promise<ImageFsUsage> {
  const timestampNs = BigInt(Date.now()) * 1_000_000n;
  const [content, committed] = await Promise.all([d.images.usage(), d.snapshots.list(['kind==committed'])]);
  const sizes = await Promise.all(
    committed.map((s) =>
      d.snapshots.usage(s.name).catch((err: unknown) => {
        // A snapshot collected between list and usage no longer occupies anything.
        if (toBerthError(err).code === Code.NOT_FOUND) return { size: 0, inodes: 0 };
        throw err;
      }),
    ),
  );
  return {
    mountpoint: d.snapshotsDir,
    usedBytes: content.bytes + sizes.reduce((n, s) => n + s.size, 0),
    inodesUsed: content.inodes + sizes.reduce((n, s) => n + s.inodes, 0),
    timestampNs,
  };
}

/** The same error, its message prefixed with the operation and image unless it names it already. */
function naming(err: unknown, spec: string, what: string): BerthError {
  const e = toBerthError(err);
  if (e.message.includes(spec)) return e;
  return new BerthError(e.code, `${what} "${spec}": ${e.message}`, { cause: e });
}
