import { BerthError, Code, type ImageRecord, toBerthError } from '@berth/api';
import { splitName } from './cri-image.js';
import type { ImagePort } from './ports.js';

const DIGEST_REF = /^(.+)@(sha256:[a-f0-9]{64})$/;

/**
 * The repository part of a reference normalized as docker does: no registry host means
 * docker.io, and a single docker.io component gains `library/`.
 */
export function normalizeRepo(repo: string): string {
  const slash = repo.indexOf('/');
  const first = slash >= 0 ? repo.slice(0, slash) : '';
  const hasHost = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (hasHost) return first === 'index.docker.io' ? `docker.io/${repo.slice(slash + 1)}` : repo;
  return repo.includes('/') ? `docker.io/${repo}` : `docker.io/library/${repo}`;
}

/**
 * A reference as the image-service names images: repository normalized as docker does, `:latest`
 * when it has neither tag nor digest (`pause:3.10` -> `docker.io/library/pause:3.10`).
 */
export function normalizeRef(ref: string): string {
  const at = ref.indexOf('@');
  const base = at >= 0 ? ref.slice(0, at) : ref;
  const colon = base.lastIndexOf(':');
  const hasTag = colon > base.lastIndexOf('/');
  const repo = normalizeRepo(hasTag ? base.slice(0, colon) : base);
  if (at >= 0) return `${repo}${ref.slice(at)}`;
  return `${repo}:${hasTag ? base.slice(colon + 1) : 'latest'}`;
}

/**
 * Finds the image a CRI ImageSpec names: a name (`busybox`, `host/a:v1`), an id or id prefix
 * (`sha256:...`), or a repo digest (`host/a@sha256:<manifest or index digest>`) of an image
 * pulled by tag, which the image-service stores under the tag only. Undefined when absent.
 */
export async function resolveImage(images: ImagePort, spec: string): Promise<ImageRecord | undefined> {
  if (spec === '') throw new BerthError(Code.INVALID_ARGUMENT, 'image spec is empty: name an image');
  try {
    return await images.get(spec);
  } catch (err) {
    const e = toBerthError(err);
    if (e.code !== Code.NOT_FOUND) throw e;
  }
  const m = DIGEST_REF.exec(spec);
  if (!m) return undefined;
  const repo = normalizeRepo(m[1] as string);
  return (await images.list()).find((r) => r.target.digest === m[2] && splitName(r.name).repo === repo);
}

/** Every record (name) of the image with this id, on this node in the CRI namespace. */
export async function namesOf(images: ImagePort, id: string): Promise<ImageRecord[]> {
  return namesIn(await images.list(), id);
}

/** The records of image id `id` (its config digest) among `records`. */
export function namesIn(records: readonly ImageRecord[], id: string): ImageRecord[] {
  return records.filter((r) => r.configDigest === id);
}
