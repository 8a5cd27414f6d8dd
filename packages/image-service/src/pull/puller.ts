import { randomUUID } from 'node:crypto';
import {
  BerthError,
  Code,
  type Descriptor,
  errors,
  type ImageRecord,
  type Platform,
  type PullImageRequest,
  type PullProgress,
  type PullReply,
  toBerthError,
  type UnpackReply,
} from '@berth/api';
import { diskFaultOf, type Logger, type Redis } from '@berth/kit';
import { Lease } from '../content/lease.js';
import type { BlobSource, ContentStore } from '../content/store.js';
import { manifestRefs, parseConfig, parseIndex, parseManifest } from '../images/manifest.js';
import {
  formatPlatform,
  hostPlatform,
  parsePlatform,
  platformScore,
  selectManifest,
} from '../images/platform.js';
import type { ImageStore } from '../images/store.js';
import type { RegistryClient } from '../registry/client.js';
import { readLimited, verifyBuffer } from '../registry/client.js';
import { isIndex, isManifest } from '../registry/media.js';
import { formatReference, parseReference, type Reference, repoName } from '../registry/reference.js';
import type { ImageSettings } from '../settings.js';
import { mapLimit, ProgressTracker } from './progress.js';

/** Label on image records naming the repository the image came from (cross-repo mount on push). */
export const SOURCE_LABEL = 'berth.source.repository';
const MAX_CONFIG_SIZE = 16 * 1024 * 1024;

/** What a pull needs; the service builds it once. */
export interface PullerDeps {
  content: ContentStore;
  images: ImageStore;
  redis: Redis;
  node: string;
  settings: ImageSettings;
  /** A registry client using the request's credentials (if any) before the docker config. */
  registry: (auth: PullImageRequest['auth']) => RegistryClient;
  /** Applies layers as snapshots (the snapshot-service `unpack`): top chainID, layers applied/skipped. */
  unpack: (layers: Descriptor[], diffIds: string[], ns: string) => Promise<UnpackReply>;
  publish: (p: PullProgress) => void;
  log: Logger;
}

/**
 * Pulls one image into the node's content store: resolve, fetch and verify the index (if any), the
 * platform's manifest, the config and the layers (in parallel, each blob once per node), write the
 * image record, then ask the snapshot-service to unpack. Blobs are leased until the record exists.
 */
export async function pullImage(
  d: PullerDeps,
  req: PullImageRequest,
  ns: string,
  signal?: AbortSignal,
): Promise<PullReply> {
  const ref = parseReference(req.ref);
  const name = formatReference(ref);
  let wanted: Platform;
  try {
    wanted = req.platform ? parsePlatform(req.platform) : hostPlatform();
  } catch (err) {
    throw errors.invalid(`pull of "${name}": ${(err as Error).message}`);
  }
  const tracker = new ProgressTracker(req.pullId ?? randomUUID(), name, d.publish);
  const reg = d.registry(req.auth);
  const lease = await Lease.create(d.redis, d.node, d.settings.leaseTtlMs);
  let fetched = 0;
  try {
    tracker.setPhase('resolving');
    const resolved = await reg.resolve(ref, signal);
    const target = resolved.desc;
    if (!isIndex(target.mediaType) && !isManifest(target.mediaType)) {
      throw errors.invalid(
        `"${name}" points at ${target.mediaType}, which is not an image manifest or index`,
      );
    }
    tracker.setPhase('fetching', { digest: target.digest });
    await lease.add(target.digest);
    const targetBody = resolved.body ?? (await readManifest(d, reg, ref, target, signal));

    let manifestDesc = target;
    let manifestBody = targetBody;
    if (isIndex(target.mediaType)) {
      const entries = parseIndex(targetBody, target.mediaType, `index of "${name}"`);
      const chosen =
        selectManifest(entries, wanted, isManifest) ??
        (await byConfigPlatform(d, reg, ref, entries, wanted, lease, signal));
      if (!chosen) {
        const have = entries
          .filter((e) => e.platform)
          .map((e) => formatPlatform(e.platform as NonNullable<Descriptor['platform']>));
        throw errors.notFound(
          `image "${name}" has no manifest for platform ${formatPlatform(wanted)} (has: ${have.join(', ') || 'none'})`,
        );
      }
      const idx = entries.indexOf(chosen);
      await d.content.writeBuffer(target, targetBody, { [`gc.ref.content.m.${idx}`]: chosen.digest });
      manifestDesc = chosen;
      await lease.add(chosen.digest);
      manifestBody = await readManifest(d, reg, ref, chosen, signal);
    }
    const manifest = parseManifest(manifestBody, manifestDesc.mediaType, `manifest of "${name}"`);
    await lease.add(manifest.config.digest, ...manifest.layers.map((l) => l.digest));
    await d.content.writeBuffer(manifestDesc, manifestBody, manifestRefs(manifest));

    const configBody = await readConfig(d, reg, ref, manifest.config, signal);
    const config = parseConfig(configBody, `config of "${name}"`, manifest.layers.length);
    if (config.os && config.architecture && !isIndex(target.mediaType)) {
      const have = {
        os: config.os,
        architecture: config.architecture,
        ...(config.variant ? { variant: config.variant } : {}),
      };
      if (req.platform && platformScore(wanted, have) < 0) {
        // As containerd and docker: an explicit --platform is a requirement, not a preference.
        throw errors.notFound(
          `image "${name}" is ${formatPlatform(have)}, not the requested platform ${formatPlatform(wanted)}`,
        );
      }
      // Without --platform a single-platform image of another architecture is stored; running it
      // is the runtime's call.
      if (!req.platform && config.architecture !== wanted.architecture) {
        d.log.warn({ image: name, arch: config.architecture }, 'image platform differs from the host');
      }
    }

    for (const l of manifest.layers) tracker.addBlob(l.digest, l.mediaType, l.size);
    tracker.flush();
    const abort = new AbortController();
    const onOuter = () => abort.abort();
    signal?.addEventListener('abort', onOuter, { once: true });
    try {
      await mapLimit(manifest.layers, d.settings.maxConcurrentDownloads, async (layer) => {
        try {
          const res = await d.content.ingest(layer, blobSource(reg, ref, layer.digest), {
            what: `blob ${layer.digest} of "${name}"`,
            progressTimeoutMs: d.settings.progressTimeoutMs,
            onStart: () => tracker.status(layer.digest, 'downloading', 0),
            onProgress: (off) => tracker.bytes(layer.digest, off),
            signal: abort.signal,
          });
          fetched += res.fetched;
          tracker.status(layer.digest, res.status === 'exists' ? 'exists' : 'done');
        } catch (err) {
          tracker.status(layer.digest, 'failed');
          // A full disk is passed on as the reason: the other downloads then drop their prefixes
          // instead of keeping them to resume (they would only hold the space).
          abort.abort(diskFaultOf(err) ? err : undefined);
          throw err;
        }
      });
    } finally {
      signal?.removeEventListener('abort', onOuter);
    }

    const now = new Date().toISOString();
    const prev = await d.images.get(ns, name);
    const rec: ImageRecord = {
      name,
      target,
      manifest: manifestDesc,
      configDigest: manifest.config.digest,
      config,
      size: manifest.layers.reduce((s, l) => s + l.size, 0) + manifest.config.size + manifestDesc.size,
      labels: { ...(prev?.labels ?? {}), [SOURCE_LABEL]: repoName(ref) },
      createdAt: prev?.createdAt ?? now,
      updatedAt: now,
    };
    // Keep the chainId when the same content was unpacked before.
    if (prev?.chainId && prev.manifest.digest === manifestDesc.digest) rec.chainId = prev.chainId;
    await d.images.put(ns, rec);
    await lease.release();

    const reference = !prev ? 'created' : prev.target.digest === target.digest ? 'unchanged' : 'updated';
    const reply: PullReply = { image: rec, fetchedBytes: fetched, reference, unpack: 'skipped' };
    if (req.unpack !== false) {
      tracker.setPhase('unpacking');
      try {
        rec.chainId = (await d.unpack(manifest.layers, config.rootfs.diff_ids, ns)).chainId;
        rec.updatedAt = new Date().toISOString();
        await d.images.put(ns, rec);
        reply.unpack = 'done';
      } catch (err) {
        const e = toBerthError(err);
        delete rec.chainId;
        await d.images.put(ns, rec);
        reply.unpack = 'failed';
        reply.unpackError = `unpack of "${name}" failed (${e.code}): ${e.message}`;
        d.log.warn(
          { image: name, code: e.code, err: e.message },
          'unpack failed; blobs and image record are kept',
        );
      }
    }
    tracker.setPhase('done', { digest: target.digest });
    return reply;
  } catch (err) {
    const e = toBerthError(err);
    tracker.setPhase('failed', { error: e.message });
    await lease.release().catch(() => undefined);
    throw e;
  } finally {
    tracker.close();
  }
}

/**
 * For index entries without a platform, the platform comes from the image config (as containerd
 * does): the first such manifest whose config matches wins. Bounded to a few entries.
 */
async function byConfigPlatform(
  d: PullerDeps,
  reg: RegistryClient,
  ref: Reference,
  entries: Descriptor[],
  wanted: NonNullable<Descriptor['platform']>,
  lease: Lease,
  signal?: AbortSignal,
): Promise<Descriptor | undefined> {
  const bare = entries.filter((e) => !e.platform && isManifest(e.mediaType)).slice(0, 8);
  for (const e of bare) {
    await lease.add(e.digest);
    const m = parseManifest(await readManifest(d, reg, ref, e, signal), e.mediaType, `manifest ${e.digest}`);
    await lease.add(m.config.digest);
    const c = parseConfig(
      await readConfig(d, reg, ref, m.config, signal),
      `config ${m.config.digest}`,
      m.layers.length,
    );
    const p = {
      os: c.os ?? '',
      architecture: c.architecture ?? '',
      ...(c.variant ? { variant: c.variant } : {}),
    };
    if (platformScore(wanted, p) >= 0) return e;
  }
  return undefined;
}

/** A manifest from the local store if present, else from the registry (verified), then stored. */
async function readManifest(
  d: PullerDeps,
  reg: RegistryClient,
  ref: Reference,
  desc: Descriptor,
  signal?: AbortSignal,
): Promise<Buffer> {
  return d.content.getOrFetch(desc, `manifest ${desc.digest} of "${formatReference(ref)}"`, (lost) =>
    reg.fetchManifest(ref, desc, either(signal, lost)),
  );
}

async function readConfig(
  d: PullerDeps,
  reg: RegistryClient,
  ref: Reference,
  desc: Descriptor,
  signal?: AbortSignal,
): Promise<Buffer> {
  const what = `config ${desc.digest} of "${formatReference(ref)}"`;
  if (desc.size > MAX_CONFIG_SIZE)
    throw errors.invalid(`${what} is ${desc.size} bytes, over the ${MAX_CONFIG_SIZE}-byte limit`);
  return d.content.getOrFetch(desc, what, async (lost) => {
    const res = await reg.fetchBlob(ref, desc.digest, 0, either(signal, lost));
    const body = await readLimited(res, MAX_CONFIG_SIZE, formatReference(ref));
    verifyBuffer(body, desc, what);
    return body;
  });
}

/** A signal aborted when either is (the pull's cancellation, the blob lock's loss). */
function either(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  return a && b ? AbortSignal.any([a, b]) : (a ?? b);
}

/** Blob bytes from the registry, honouring a resume offset when the server answers 206. */
function blobSource(reg: RegistryClient, ref: Reference, digest: string): BlobSource {
  return async (offset, signal) => {
    const res = await reg.fetchBlob(ref, digest, offset, signal);
    if (!res.body) throw new BerthError(Code.UNAVAILABLE, `registry sent no body for blob ${digest}`);
    const body = res.body as unknown as AsyncIterable<Uint8Array>;
    if (offset > 0 && res.status === 206) {
      const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      if (m && Number(m[1]) === offset) return { offset, body };
      await res.body.cancel().catch(() => undefined);
      // An unusable partial answer: ask for the whole blob.
      const full = await reg.fetchBlob(ref, digest, 0, signal);
      return { offset: 0, body: full.body as unknown as AsyncIterable<Uint8Array> };
    }
    return { offset: 0, body };
  };
}
