import { errors } from '@berth/api';

/** A parsed, normalized image reference: `domain/path[:tag][@digest]`. */
export interface Reference {
  domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  path: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const MAX_NAME = 255;

/**
 * Parses what a user types (`busybox`, `host:5000/a/b:tag`, `x@sha256:…`) into a normalized
 * reference, as docker's reference.ParseNormalizedNamed does: no domain means docker.io, a single
 * docker.io path component gains `library/`, and no tag or digest means `latest`.
 * Throws INVALID_ARGUMENT naming the reference.
 */
export function parseReference(input: string): Reference {
  const bad = (why: string) => errors.invalid(`invalid reference "${input}": ${why}`);
  if (input.length === 0) throw bad('empty');
  if (input !== input.trim()) throw bad('contains whitespace');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('digest must be sha256:<64 lowercase hex>');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag "${tag}" is not valid`);
  }
  let domain = DOCKER_HUB;
  let path = rest;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (
      first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first !== first.toLowerCase()
    ) {
      domain = first;
      path = rest.slice(firstSlash + 1);
    }
  }
  if (domain === 'index.docker.io') domain = DOCKER_HUB;
  if (!DOMAIN.test(domain)) throw bad(`registry host "${domain}" is not valid`);
  if (path.length === 0) throw bad('repository name is empty');
  if (path !== path.toLowerCase()) throw bad('repository name must be lowercase');
  if (domain === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  for (const c of path.split('/')) {
    if (!COMPONENT.test(c)) throw bad(`repository name component "${c}" is not valid`);
  }
  if (domain.length + 1 + path.length > MAX_NAME) throw bad(`name longer than ${MAX_NAME} characters`);
  if (!tag && !digest) tag = 'latest';
  const ref: Reference = { domain, path };
  if (tag) ref.tag = tag;
  if (digest) ref.digest = digest;
  return ref;
}

/** `domain/path` of a reference (its repository). */
export function repoName(ref: Reference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalized string: `docker.io/library/busybox:latest`, `host/a@sha256:…`. */
export function formatReference(ref: Reference): string {
  return `${repoName(ref)}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** What the registry is asked for: the digest if present, else the tag. */
export function objectOf(ref: Reference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** Normalizes a name, returning undefined instead of throwing when it is not a reference. */
export function tryNormalize(input: string): string | undefined {
  try {
    return formatReference(parseReference(input));
  } catch {
    return undefined;
  }
}
