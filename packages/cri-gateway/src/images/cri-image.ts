import type { ImageRecord } from '@berth/api';

/** CRI ImageSpec, as on the wire. */
export interface CriImageSpec {
  image: string;
  annotations: Record<string, string>;
}

/** CRI Image, as on the wire (proto field names; uint64 as a decimal string). */
export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: string;
  uid: { value: string } | null;
  username: string;
  spec: CriImageSpec;
  pinned: boolean;
}

/**
 * Splits a normalized name into its repository and whether it carries a tag:
 * `host/a/b:v1` -> tagged `host/a/b`; `host/a/b@sha256:...` -> untagged `host/a/b`.
 */
export function splitName(name: string): { repo: string; tagged: boolean } {
  const at = name.indexOf('@');
  const base = at >= 0 ? name.slice(0, at) : name;
  const colon = base.lastIndexOf(':');
  if (colon > base.lastIndexOf('/')) return { repo: base.slice(0, colon), tagged: at < 0 };
  return { repo: base, tagged: false };
}

/**
 * The user an image runs as, as CRI reports it: `uid` when the config's User is numeric,
 * `username` otherwise; a `user:group` form contributes only its user part. An image that names
 * no user reports neither (the kubelet then treats it as root), as containerd does.
 */
export function criUser(user: string | undefined): { uid: { value: string } | null; username: string } {
  const u = (user ?? '').split(':')[0] ?? '';
  if (u === '') return { uid: null, username: '' };
  if (/^[0-9]+$/.test(u)) return { uid: { value: u }, username: '' };
  return { uid: null, username: u };
}

/**
 * The first repo tag and repo digest of `image` among `records` (in ListImages' order), as a
 * container's status reports them (containerd: the image spec is the first tag, image_ref the
 * first digested reference); the image's own record counts when the list has not caught up.
 */
export function criImageNames(
  records: readonly ImageRecord[],
  image: ImageRecord,
): { tag?: string; digestRef?: string } {
  const same = records.filter((r) => r.configDigest === image.configDigest);
  const [criImage] = toCriImages(same.length > 0 ? same : [image]);
  return { tag: criImage?.repo_tags[0], digestRef: criImage?.repo_digests[0] };
}

/**
 * Folds image records (one per name) into CRI images (one per id, the config digest), the way
 * containerd's CRI does: every tagged name becomes a repo tag, every repository a repo digest
 * pinned to what its name resolved to (the manifest or index digest). An image with a name in
 * `pinned` (the sandbox image) is `pinned`: the kubelet's image GC never removes it.
 */
export function toCriImages(
  records: readonly ImageRecord[],
  pinned: ReadonlySet<string> = new Set(),
): CriImage[] {
  const byId = new Map<string, ImageRecord[]>();
  for (const r of records) {
    const group = byId.get(r.configDigest);
    if (group) group.push(r);
    else byId.set(r.configDigest, [r]);
  }
  const out: CriImage[] = [];
  for (const [id, group] of byId) {
    const tags = new Set<string>();
    const digests = new Set<string>();
    for (const r of group) {
      const { repo, tagged } = splitName(r.name);
      if (tagged) tags.add(r.name);
      digests.add(`${repo}@${r.target.digest}`);
    }
    const first = group[0] as ImageRecord;
    out.push({
      id,
      repo_tags: [...tags].sort(),
      repo_digests: [...digests].sort(),
      size: String(first.size),
      ...criUser(first.config.config?.User),
      spec: { image: id, annotations: {} },
      pinned: group.some((r) => pinned.has(r.name)),
    });
  }
  return out;
}
