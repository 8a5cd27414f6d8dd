import {
  BerthError,
  Code,
  chainIds,
  errors,
  IMAGE_RECORD_MAX_BYTES,
  type ImageEvent,
  ImageRecord,
  ImageTopic,
} from '@berth/api';
import { keys, type Redis } from '@berth/kit';
import { tryNormalize } from '../registry/reference.js';

/**
 * Image records of one node in Redis: keys.image(node, ns, name) is a hash with the record JSON and
 * its target digest (read by GC), keys.images(node, ns) a sorted set of names by update time.
 */
export class ImageStore {
  /** `announce` publishes an ImageTopic event once a change is stored. */
  constructor(
    private readonly redis: Redis,
    private readonly node: string,
    private readonly announce: (topic: ImageTopic, ns: string, e: ImageEvent) => void = () => undefined,
  ) {}

  /**
   * Writes a record and indexes its name, in one transaction, then announces it. A record over IMAGE_RECORD_MAX_BYTES
   * (an image config far larger than images have) is refused with INVALID_ARGUMENT: no reply could
   * carry it, and one such record would break every listing of its namespace.
   */
  async put(ns: string, rec: ImageRecord): Promise<void> {
    const record = JSON.stringify(rec);
    const size = Buffer.byteLength(record, 'utf8');
    if (size > IMAGE_RECORD_MAX_BYTES) {
      throw errors.invalid(
        `image "${rec.name}": its record (mostly the image config ${rec.configDigest}) is ${size} bytes, ` +
          `over the limit of ${IMAGE_RECORD_MAX_BYTES} bytes (${IMAGE_RECORD_MAX_BYTES / 1024} KiB) of an image record`,
      );
    }
    await this.redis
      .multi()
      .hset(keys.image(this.node, ns, rec.name), { record, target: rec.target.digest })
      .zadd(keys.images(this.node, ns), Date.parse(rec.updatedAt) || Date.now(), rec.name)
      .exec();
    this.announce(ImageTopic.imageUpdate, ns, {
      name: rec.name,
      updatedAt: rec.updatedAt,
      chainId: rec.chainId ?? '',
    });
  }

  /** The record stored under an exact normalized name. */
  async get(ns: string, name: string): Promise<ImageRecord | undefined> {
    const raw = await this.redis.hget(keys.image(this.node, ns, name), 'record');
    return raw ? ImageRecord.parse(JSON.parse(raw)) : undefined;
  }

  /** All records of a namespace, newest first. */
  async list(ns: string): Promise<ImageRecord[]> {
    const names = await this.redis.zrevrange(keys.images(this.node, ns), 0, -1);
    if (names.length === 0) return [];
    const m = this.redis.multi();
    for (const n of names) m.hget(keys.image(this.node, ns, n), 'record');
    const res = (await m.exec()) ?? [];
    const out: ImageRecord[] = [];
    for (const [err, raw] of res) {
      if (!err && typeof raw === 'string') out.push(ImageRecord.parse(JSON.parse(raw)));
    }
    return out;
  }

  /** Deletes a name; true if it existed. */
  async delete(ns: string, name: string): Promise<boolean> {
    const res = await this.redis
      .multi()
      .del(keys.image(this.node, ns, name))
      .zrem(keys.images(this.node, ns), name)
      .exec();
    const existed = Number(res?.[0]?.[1] ?? 0) > 0;
    if (existed) this.announce(ImageTopic.imageDelete, ns, { name });
    return existed;
  }

  /**
   * Finds an image by name (normalized: `busybox` finds docker.io/library/busybox:latest) or by a
   * prefix of its id (config digest), manifest or target digest, with or without `sha256:`.
   */
  async find(ns: string, nameOrId: string): Promise<ImageRecord> {
    const norm = tryNormalize(nameOrId);
    if (norm) {
      const rec = await this.get(ns, norm);
      if (rec) return rec;
    }
    const prefix = nameOrId.startsWith('sha256:')
      ? nameOrId
      : /^[a-f0-9]{3,64}$/.test(nameOrId)
        ? `sha256:${nameOrId}`
        : undefined;
    if (prefix) {
      const all = await this.list(ns);
      const hits = all.filter((r) =>
        [r.configDigest, r.manifest.digest, r.target.digest].some((d) => d.startsWith(prefix)),
      );
      const ids = new Set(hits.map((r) => r.configDigest));
      if (ids.size === 1) return hits[0] as ImageRecord;
      if (ids.size > 1)
        throw new BerthError(Code.FAILED_PRECONDITION, `image id prefix "${nameOrId}" is ambiguous`);
    }
    throw errors.notFound(`image "${norm ?? nameOrId}" not found`);
  }

  /** Every image target digest on the node, in all namespaces: the roots of GC. */
  async allTargets(): Promise<Set<string>> {
    const out = new Set<string>();
    await this.eachName(async (ns, name) => {
      const t = await this.redis.hget(keys.image(this.node, ns, name), 'target');
      if (t) out.add(t);
    });
    return out;
  }

  /**
   * The top chainID of every image record on the node, in all namespaces: the record's chainId
   * (set once unpacked) and the chain its config's diff_ids name (a record not unpacked yet, or
   * unpacked before the record was updated, still roots it). The snapshot-service's GC keeps these.
   * A record that does not parse fails the whole answer: GC must not run on a partial root set.
   */
  async chainRoots(): Promise<string[]> {
    const out = new Set<string>();
    await this.eachName(async (ns, name) => {
      const raw = await this.redis.hget(keys.image(this.node, ns, name), 'record');
      if (!raw) return; // deleted since the listing
      const parsed = ImageRecord.safeParse(JSON.parse(raw));
      if (!parsed.success) {
        throw new BerthError(Code.INTERNAL, `image record "${name}" in namespace "${ns}" does not parse`);
      }
      const rec = parsed.data;
      if (rec.chainId) out.add(rec.chainId);
      const top = chainIds(rec.config.rootfs.diff_ids).at(-1);
      if (top) out.add(top);
    });
    return [...out];
  }

  /** Calls fn for every image name of the node, in every namespace (SCAN over the name sets). */
  private async eachName(fn: (ns: string, name: string) => Promise<void>): Promise<void> {
    const pattern = keys.images(this.node, '*');
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
      cursor = next;
      for (const setKey of found) {
        const ns = nsOfImagesKey(setKey, this.node);
        if (ns === undefined) continue;
        for (const name of await this.redis.zrange(setKey, 0, -1)) await fn(ns, name);
      }
    } while (cursor !== '0');
  }
}

function nsOfImagesKey(key: string, node: string): string | undefined {
  const head = keys.images(node, '\u0000').split('\u0000');
  const [pre, post] = head as [string, string];
  if (!key.startsWith(pre) || !key.endsWith(post)) return undefined;
  return key.slice(pre.length, key.length - post.length);
}
