import { Descriptor, errors, ImageConfig } from '@berth/api';
import { z } from 'zod';
import { isIndex, isManifest } from '../registry/media.js';

/** An OCI index or Docker manifest list (fields berth reads; others pass through). */
export const IndexDoc = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    manifests: z.array(
      z.object({ mediaType: z.string(), digest: z.string(), size: z.number() }).passthrough(),
    ),
  })
  .passthrough();
export type IndexDoc = z.infer<typeof IndexDoc>;

/** An OCI or Docker schema2 image manifest. */
export const ManifestDoc = z
  .object({
    schemaVersion: z.literal(2),
    mediaType: z.string().optional(),
    config: Descriptor,
    layers: z.array(Descriptor),
  })
  .passthrough();
export type ManifestDoc = z.infer<typeof ManifestDoc>;

function parseJson(body: Buffer, what: string): Record<string, unknown> {
  try {
    return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw errors.invalid(`${what} is not valid JSON`);
  }
}

/**
 * Parses an index. The declared media type must agree with the document (a document that could be
 * read both as an index and a manifest is refused, GHSA-5j5w-g665-5m35). Entries with digests that
 * are not sha256 are dropped rather than failing the whole index.
 */
export function parseIndex(body: Buffer, mediaType: string, what: string): Descriptor[] {
  const raw = parseJson(body, what);
  if ('config' in raw || 'layers' in raw)
    throw errors.invalid(`${what} is ambiguous: an index with manifest fields`);
  if (
    raw.mediaType !== undefined &&
    raw.mediaType !== mediaType &&
    isIndex(String(raw.mediaType)) !== isIndex(mediaType)
  ) {
    throw errors.invalid(`${what}: media type ${String(raw.mediaType)} does not match ${mediaType}`);
  }
  const p = IndexDoc.safeParse(raw);
  if (!p.success) throw errors.invalid(`${what} is not a valid index: ${p.error.issues[0]?.message}`);
  const out: Descriptor[] = [];
  for (const m of p.data.manifests) {
    const d = Descriptor.safeParse(m);
    if (d.success) out.push(d.data);
  }
  return out;
}

/** Parses an image manifest, refusing ambiguous documents and non-image configs. */
export function parseManifest(body: Buffer, mediaType: string, what: string): ManifestDoc {
  const raw = parseJson(body, what);
  if ('manifests' in raw) throw errors.invalid(`${what} is ambiguous: a manifest with an index field`);
  if (raw.mediaType !== undefined && !isManifest(String(raw.mediaType))) {
    throw errors.invalid(
      `${what}: document media type ${String(raw.mediaType)} is not a manifest (${mediaType})`,
    );
  }
  const p = ManifestDoc.safeParse(raw);
  if (!p.success)
    throw errors.invalid(`${what} is not a valid image manifest: ${p.error.issues[0]?.message}`);
  return p.data;
}

/** Parses an image config; INVALID_ARGUMENT if it is not a container image config. */
export function parseConfig(body: Buffer, what: string, layerCount: number): ImageConfig {
  const p = ImageConfig.safeParse(parseJson(body, what));
  if (!p.success)
    throw errors.invalid(`${what} is not a container image config: ${p.error.issues[0]?.message}`);
  if (p.data.rootfs.diff_ids.length !== layerCount) {
    throw errors.invalid(`${what} lists ${p.data.rootfs.diff_ids.length} diff_ids for ${layerCount} layers`);
  }
  return p.data;
}

/** The gc.ref labels of a manifest: its config and each layer. */
export function manifestRefs(m: ManifestDoc): Record<string, string> {
  const labels: Record<string, string> = { 'gc.ref.content.config': m.config.digest };
  m.layers.forEach((l, i) => {
    labels[`gc.ref.content.l.${i}`] = l.digest;
  });
  return labels;
}
