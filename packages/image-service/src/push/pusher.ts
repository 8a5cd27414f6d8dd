import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import {
  BerthError,
  Code,
  type Descriptor,
  type ImageRecord,
  type PullProgress,
  type PushImageReply,
  type PushImageRequest,
} from '@berth/api';
import type { ContentStore } from '../content/store.js';
import { parseIndex, parseManifest } from '../images/manifest.js';
import type { ImageStore } from '../images/store.js';
import { mapLimit, ProgressTracker } from '../pull/progress.js';
import { SOURCE_LABEL } from '../pull/puller.js';
import type { RegistryClient } from '../registry/client.js';
import { isIndex } from '../registry/media.js';
import { formatReference, parseReference, type Reference } from '../registry/reference.js';

/** What a push needs. */
export interface PusherDeps {
  content: ContentStore;
  images: ImageStore;
  registry: (auth: PushImageRequest['auth'], host: string) => RegistryClient;
  publish: (p: PullProgress) => void;
  concurrency: number;
}

/** The manifests and blobs an image consists of locally: an index only when all its children are here. */
export async function localGraph(
  content: ContentStore,
  rec: ImageRecord,
): Promise<{
  root: Descriptor;
  manifests: { desc: Descriptor; body: Buffer }[];
  blobs: Descriptor[];
  rootBody: Buffer;
}> {
  const manifests: { desc: Descriptor; body: Buffer }[] = [];
  let root = rec.manifest;
  if (isIndex(rec.target.mediaType) && (await content.has(rec.target))) {
    const body = await content.read(rec.target.digest);
    const children = parseIndex(body, rec.target.mediaType, `index of "${rec.name}"`);
    const present = await Promise.all(children.map((c) => content.has(c)));
    if (present.every(Boolean)) {
      root = rec.target;
      for (const c of children) manifests.push({ desc: c, body: await content.read(c.digest) });
    }
  }
  if (root === rec.manifest)
    manifests.push({ desc: rec.manifest, body: await content.read(rec.manifest.digest) });
  const blobs = new Map<string, Descriptor>();
  for (const m of manifests) {
    const doc = parseManifest(m.body, m.desc.mediaType, `manifest ${m.desc.digest} of "${rec.name}"`);
    for (const b of [doc.config, ...doc.layers]) {
      if (!(await content.has(b))) {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `blob ${b.digest} of "${rec.name}" is not in the content store; pull the image again`,
        );
      }
      blobs.set(b.digest, b);
    }
  }
  const rootBody = root === rec.manifest ? (manifests[0]?.body as Buffer) : await content.read(root.digest);
  return { root, manifests, blobs: [...blobs.values()], rootBody };
}

/**
 * Pushes a local image: blobs the repository lacks are uploaded (or mounted from the repository
 * the image came from on the same registry), then the manifests, then the root under the tag.
 */
export async function pushImage(d: PusherDeps, req: PushImageRequest, ns: string): Promise<PushImageReply> {
  const rec = await d.images.find(ns, req.name);
  const ref = parseReference(req.ref ?? rec.name);
  const name = formatReference(ref);
  const reg = d.registry(req.auth, ref.domain);
  const g = await localGraph(d.content, rec);
  const tracker = new ProgressTracker(req.pushId ?? randomUUID(), name, d.publish);
  const mountFrom = mountSource(rec, ref);
  const counts = { uploaded: 0, mounted: 0, existing: 0 };
  try {
    tracker.setPhase('fetching', { digest: g.root.digest });
    for (const b of g.blobs) tracker.addBlob(b.digest, b.mediaType, b.size);
    await mapLimit(g.blobs, d.concurrency, async (b) => {
      if (await reg.blobExists(ref, b.digest)) {
        counts.existing++;
        tracker.status(b.digest, 'exists');
        return;
      }
      const up = await reg.startUpload(ref, b.digest, mountFrom);
      if (up.mounted) {
        counts.mounted++;
        tracker.status(b.digest, 'exists');
        return;
      }
      tracker.status(b.digest, 'downloading', 0);
      await reg.putBlob(ref, up.location as string, b.digest, b.size, () => bodyOf(d.content.path(b.digest)));
      counts.uploaded++;
      tracker.status(b.digest, 'done');
    });
    if (isIndex(g.root.mediaType)) {
      for (const m of g.manifests) await reg.putManifest(ref, m.desc.digest, m.desc.mediaType, m.body);
    }
    await reg.putManifest(ref, ref.tag ?? g.root.digest, g.root.mediaType, g.rootBody);
    tracker.setPhase('done', { digest: g.root.digest });
    return { ref: name, digest: g.root.digest, ...counts };
  } catch (err) {
    tracker.setPhase('failed', { error: (err as Error).message });
    throw err;
  } finally {
    tracker.close();
  }
}

/** The repository to mount blobs from: where the image came from, if on the same registry. */
function mountSource(rec: ImageRecord, ref: Reference): string | undefined {
  const src = rec.labels[SOURCE_LABEL];
  if (!src) return undefined;
  const slash = src.indexOf('/');
  const domain = src.slice(0, slash);
  const path = src.slice(slash + 1);
  return domain === ref.domain && path !== ref.path ? path : undefined;
}

function bodyOf(path: string): NonNullable<RequestInit['body']> {
  return Readable.toWeb(createReadStream(path)) as unknown as NonNullable<RequestInit['body']>;
}
