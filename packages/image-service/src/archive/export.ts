import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  type Descriptor,
  type ExportImageReply,
  type ExportImageRequest,
  errors,
  MediaType,
} from '@berth/api';
import { diskError, writeFully } from '@berth/kit';
import { TAR_END, tarHeader, tarPadding } from '@berth/tar';
import type { ContentStore } from '../content/store.js';
import type { ImageStore } from '../images/store.js';
import { localGraph } from '../push/pusher.js';
import { parseReference } from '../registry/reference.js';

/** Docker's short form of a name (`busybox:latest` for docker.io/library/busybox:latest). */
export function familiarName(name: string): string {
  return name.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
}

/**
 * Writes an OCI image-layout tar of the named images: oci-layout, index.json (each image's root
 * annotated with its full name and tag, as containerd does) and every blob, plus a docker-style
 * manifest.json so `docker load` of older versions accepts it. Written to a temp name and renamed.
 */
export async function exportImages(
  d: { content: ContentStore; images: ImageStore },
  req: ExportImageRequest,
  ns: string,
): Promise<ExportImageReply> {
  const roots: Descriptor[] = [];
  const blobs = new Map<string, number>();
  const dockerManifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  for (const n of req.names) {
    const rec = await d.images.find(ns, n);
    const g = await localGraph(d.content, rec);
    const ref = parseReference(rec.name);
    const annotations: Record<string, string> = { 'io.containerd.image.name': rec.name };
    if (ref.tag) annotations['org.opencontainers.image.ref.name'] = ref.tag;
    roots.push({ mediaType: g.root.mediaType, digest: g.root.digest, size: g.root.size, annotations });
    blobs.set(g.root.digest, g.root.size);
    for (const m of g.manifests) blobs.set(m.desc.digest, m.desc.size);
    for (const b of g.blobs) blobs.set(b.digest, b.size);
    const chosen = g.manifests.find((m) => m.desc.digest === rec.manifest.digest) ?? g.manifests[0];
    if (chosen) {
      const doc = JSON.parse(chosen.body.toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
      dockerManifest.push({
        Config: `blobs/sha256/${doc.config.digest.slice(7)}`,
        RepoTags: ref.tag && !ref.digest ? [familiarName(rec.name)] : [],
        Layers: doc.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
      });
    }
  }
  const index = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: roots }),
  );
  const layout = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const manifestJson = Buffer.from(JSON.stringify(dockerManifest));

  const tmp = join(dirname(req.path), `.${randomUUID()}.berth-save.tmp`);
  const what = `export to "${req.path}"`;
  const fh = await open(tmp, 'w', 0o644).catch((err: Error) => {
    throw diskError(err, { what, path: tmp }) ?? errors.invalid(`cannot write ${req.path}: ${err.message}`);
  });
  let size = 0;
  const write = async (b: Buffer) => {
    await writeFully(fh, [b], null);
    size += b.length;
  };
  try {
    const file = async (name: string, body: Buffer) => {
      await write(tarHeader({ name, type: 'file', mode: 0o644 }, body.length));
      await write(body);
      await write(tarPadding(body.length));
    };
    await file('oci-layout', layout);
    await write(tarHeader({ name: 'blobs/', type: 'dir', mode: 0o755 }, 0));
    await write(tarHeader({ name: 'blobs/sha256/', type: 'dir', mode: 0o755 }, 0));
    for (const [digest, len] of blobs) {
      await write(tarHeader({ name: `blobs/sha256/${digest.slice(7)}`, type: 'file', mode: 0o644 }, len));
      let n = 0;
      for await (const chunk of createReadStream(d.content.path(digest), { highWaterMark: 1 << 20 })) {
        n += (chunk as Buffer).length;
        await write(chunk as Buffer);
      }
      if (n !== len) throw errors.internal(`blob ${digest} changed size while exporting`);
      await write(tarPadding(len));
    }
    await file('index.json', index);
    await file('manifest.json', manifestJson);
    await write(TAR_END);
    await fh.datasync();
    await fh.close();
    await rename(tmp, req.path);
    return { path: req.path, size };
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw diskError(err, { what, path: tmp, after: 'the partial archive was removed' }) ?? err;
  }
}
