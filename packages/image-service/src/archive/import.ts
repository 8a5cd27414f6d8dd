import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import {
  type Descriptor,
  errors,
  type ImageRecord,
  type ImportImageReply,
  type ImportImageRequest,
  MediaType,
} from '@berth/api';
import type { Redis } from '@berth/kit';
import { EntryType, nameText, readTar } from '@berth/tar';
import { Lease } from '../content/lease.js';
import type { ContentStore } from '../content/store.js';
import { manifestRefs, parseConfig, parseIndex, parseManifest } from '../images/manifest.js';
import { hostPlatform, selectManifest } from '../images/platform.js';
import type { ImageStore } from '../images/store.js';
import { SOURCE_LABEL } from '../pull/puller.js';
import { isIndex, isManifest, layerTypeFromMagic } from '../registry/media.js';
import { formatReference, parseReference, repoName } from '../registry/reference.js';

const SMALL_LIMIT = 16 * 1024 * 1024;
/** Bound on all JSON documents kept in memory together (a hostile archive must not exhaust it). */
const SMALL_TOTAL_LIMIT = 64 * 1024 * 1024;
const BLOB_PATH = /^blobs\/sha256\/([a-f0-9]{64})$/;

/** What an import needs. */
export interface ImportDeps {
  content: ContentStore;
  images: ImageStore;
  redis: Redis;
  node: string;
  leaseTtlMs: number;
}

/**
 * Imports an OCI image-layout tar or a docker-save tar in one streaming pass: every blob goes
 * straight into the content store (verified against its name when it is content-addressed), small
 * JSON documents are kept in memory; then image records are built from index.json (OCI) or
 * manifest.json (docker). Blobs are leased until the records exist.
 */
export async function importArchive(
  d: ImportDeps,
  req: ImportImageRequest,
  ns: string,
): Promise<ImportImageReply> {
  const st = await stat(req.path).catch(() => undefined);
  if (!st?.isFile()) throw errors.notFound(`archive "${req.path}" not found`);
  const lease = await Lease.create(d.redis, d.node, d.leaseTtlMs);
  try {
    const small = new Map<string, Buffer>();
    let smallTotal = 0;
    const files = new Map<string, Descriptor>();
    for await (const { header, body } of readTar(createReadStream(req.path, { highWaterMark: 1 << 20 }))) {
      if (header.type !== EntryType.file) continue;
      const name = nameText(header.name)
        .replace(/^(\.\/)+/, '')
        .replace(/^\/+/, '');
      const m = BLOB_PATH.exec(name);
      if (m) {
        const desc = await d.content.writeStream(body, {
          expected: `sha256:${m[1]}`,
          what: `blob ${name} of archive "${req.path}"`,
          beforeCommit: (dg) => lease.add(dg),
        });
        files.set(name, desc);
      } else if (
        (name.endsWith('.json') || name === 'oci-layout' || name === 'repositories') &&
        header.size <= SMALL_LIMIT
      ) {
        smallTotal += header.size;
        if (smallTotal > SMALL_TOTAL_LIMIT) {
          throw errors.invalid(
            `archive "${req.path}" has more than ${SMALL_TOTAL_LIMIT} bytes of JSON documents`,
          );
        }
        const chunks: Buffer[] = [];
        for await (const c of body) chunks.push(Buffer.from(c));
        small.set(name, Buffer.concat(chunks));
      } else if (/(^|\/)layer\.tar$/.test(name) || header.size > 0) {
        const desc = await d.content.writeStream(body, {
          what: `layer ${name} of archive "${req.path}"`,
          mediaType: (head) => layerTypeFromMagic(head, true),
          beforeCommit: (dg) => lease.add(dg),
        });
        files.set(name, desc);
      }
    }
    const images = small.has('index.json')
      ? await fromOciLayout(d, small, files, req, ns)
      : small.has('manifest.json')
        ? await fromDockerSave(d, small, files, req, ns)
        : undefined;
    if (!images)
      throw errors.invalid(`archive "${req.path}" is neither an OCI image layout nor a docker-save archive`);
    return { images };
  } finally {
    await lease.release().catch(() => undefined);
  }
}

function json<T>(buf: Buffer | undefined, what: string): T {
  if (!buf) throw errors.invalid(`${what} is missing`);
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch {
    throw errors.invalid(`${what} is not valid JSON`);
  }
}

async function fromOciLayout(
  d: ImportDeps,
  small: Map<string, Buffer>,
  files: Map<string, Descriptor>,
  req: ImportImageRequest,
  ns: string,
): Promise<ImageRecord[]> {
  const idx = json<{ manifests?: Descriptor[] }>(small.get('index.json'), `index.json of "${req.path}"`);
  const out: ImageRecord[] = [];
  for (const root of idx.manifests ?? []) {
    const ann = root.annotations ?? {};
    const full = ann['io.containerd.image.name'];
    const tag = ann['org.opencontainers.image.ref.name'];
    let name: string | undefined;
    if (full) name = full;
    else if (tag && /[/:]/.test(tag)) name = tag;
    else if (req.name)
      name = tag ? `${formatReference(parseReference(req.name)).replace(/[:@].*$/, '')}:${tag}` : req.name;
    if (!name) {
      throw errors.invalid(`image ${root.digest} in "${req.path}" carries no name; pass one with --name`);
    }
    out.push(await record(d, files, root, formatReference(parseReference(name)), ns, req.path));
  }
  return out;
}

async function fromDockerSave(
  d: ImportDeps,
  small: Map<string, Buffer>,
  files: Map<string, Descriptor>,
  req: ImportImageRequest,
  ns: string,
): Promise<ImageRecord[]> {
  const list = json<{ Config: string; RepoTags?: string[] | null; Layers: string[] }[]>(
    small.get('manifest.json'),
    `manifest.json of "${req.path}"`,
  );
  const out: ImageRecord[] = [];
  for (const entry of list) {
    const configBody =
      small.get(entry.Config) ??
      (files.has(entry.Config)
        ? await d.content.read((files.get(entry.Config) as Descriptor).digest)
        : undefined);
    if (!configBody) throw errors.invalid(`config ${entry.Config} is missing from "${req.path}"`);
    const configDesc: Descriptor = {
      mediaType: MediaType.dockerConfig,
      digest: sha(configBody),
      size: configBody.length,
    };
    await d.content.writeBuffer(configDesc, configBody);
    const layers: Descriptor[] = [];
    for (const l of entry.Layers) {
      const f = files.get(l);
      if (!f) throw errors.invalid(`layer ${l} is missing from "${req.path}"`);
      const head = (await d.content.read(f.digest).catch(() => Buffer.alloc(0))).subarray(0, 8);
      layers.push({ mediaType: layerTypeFromMagic(head, true), digest: f.digest, size: f.size });
    }
    const manifest = Buffer.from(
      JSON.stringify(
        { schemaVersion: 2, mediaType: MediaType.dockerManifest, config: configDesc, layers },
        null,
        3,
      ),
    );
    const mdesc: Descriptor = {
      mediaType: MediaType.dockerManifest,
      digest: sha(manifest),
      size: manifest.length,
    };
    await d.content.writeBuffer(mdesc, manifest);
    const names =
      (entry.RepoTags ?? []).length > 0 ? (entry.RepoTags as string[]) : req.name ? [req.name] : [];
    if (names.length === 0)
      throw errors.invalid(`image ${entry.Config} in "${req.path}" has no RepoTags; pass a name with --name`);
    for (const n of names)
      out.push(await record(d, files, mdesc, formatReference(parseReference(n)), ns, req.path));
  }
  return out;
}

/** Checks an imported graph is complete, labels it for GC and writes the image record. */
async function record(
  d: ImportDeps,
  _files: Map<string, Descriptor>,
  root: Descriptor,
  name: string,
  ns: string,
  path: string,
): Promise<ImageRecord> {
  const missing = (desc: Descriptor) =>
    errors.invalid(`blob ${desc.digest} of "${name}" is missing from "${path}"`);
  if (!(await d.content.has(root))) throw missing(root);
  const target: Descriptor = { mediaType: root.mediaType, digest: root.digest, size: root.size };
  let manifestDesc = target;
  if (isIndex(root.mediaType)) {
    const body = await d.content.read(root.digest);
    const entries = parseIndex(body, root.mediaType, `index of "${name}"`);
    const present: Descriptor[] = [];
    for (const e of entries) if (isManifest(e.mediaType) && (await d.content.has(e))) present.push(e);
    const chosen = selectManifest(present, hostPlatform(), isManifest) ?? present[0];
    if (!chosen) throw errors.invalid(`index of "${name}" in "${path}" has no manifest in the archive`);
    const labels: Record<string, string> = {};
    entries.forEach((e, i) => {
      if (present.includes(e)) labels[`gc.ref.content.m.${i}`] = e.digest;
    });
    await d.content.writeBuffer(target, body, labels);
    for (const p of present) {
      const pm = parseManifest(
        await d.content.read(p.digest),
        p.mediaType,
        `manifest ${p.digest} of "${name}"`,
      );
      await d.content.writeBuffer(p, await d.content.read(p.digest), manifestRefs(pm));
    }
    manifestDesc = chosen;
  } else if (!isManifest(root.mediaType)) {
    throw errors.invalid(`"${name}" in "${path}" is ${root.mediaType}, not an image`);
  }
  const mbody = await d.content.read(manifestDesc.digest);
  const m = parseManifest(mbody, manifestDesc.mediaType, `manifest of "${name}"`);
  for (const b of [m.config, ...m.layers]) if (!(await d.content.has(b))) throw missing(b);
  await d.content.writeBuffer(manifestDesc, mbody, manifestRefs(m));
  const config = parseConfig(await d.content.read(m.config.digest), `config of "${name}"`, m.layers.length);
  const now = new Date().toISOString();
  const prev = await d.images.get(ns, name);
  const rec: ImageRecord = {
    name,
    target,
    manifest: { mediaType: manifestDesc.mediaType, digest: manifestDesc.digest, size: manifestDesc.size },
    configDigest: m.config.digest,
    config,
    size: m.layers.reduce((s, l) => s + l.size, 0) + m.config.size + manifestDesc.size,
    labels: { ...(prev?.labels ?? {}), [SOURCE_LABEL]: repoName(parseReference(name)) },
    createdAt: prev?.createdAt ?? now,
    updatedAt: now,
  };
  await d.images.put(ns, rec);
  return rec;
}

function sha(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}
