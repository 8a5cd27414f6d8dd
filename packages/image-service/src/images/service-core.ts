import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  type ContentUsageReply,
  type Descriptor,
  type ExportImageReply,
  type ExportImageRequest,
  type GcReply,
  type ImageRecord,
  type ImageUnpackReply,
  type ImportImageReply,
  type ImportImageRequest,
  type ListImagesRequest,
  type PullImageRequest,
  type PullProgress,
  type PullReply,
  type PushImageReply,
  type PushImageRequest,
  type RegistryAuth,
  type RemoveImageReply,
  type RemoveImageRequest,
  type TagImageRequest,
  toBerthError,
  type UnpackReply,
} from '@berth/api';
import { decodeCursor, fillPage, type Logger, type Page, type Redis } from '@berth/kit';
import { exportImages } from '../archive/export.js';
import { importArchive } from '../archive/import.js';
import { collectGarbage } from '../content/gc.js';
import { ContentStore } from '../content/store.js';
import { pullImage } from '../pull/puller.js';
import { pushImage } from '../push/pusher.js';
import { credentialsFromDockerConfig, TokenCache } from '../registry/auth.js';
import { RegistryClient } from '../registry/client.js';
import { hostsFromDirs } from '../registry/hosts-toml.js';
import { formatReference, parseReference, tryNormalize } from '../registry/reference.js';
import type { ImageSettings } from '../settings.js';
import { GcLater } from './gc-later.js';
import { parseManifest } from './manifest.js';
import { ImageStore } from './store.js';

/** Calls into other services and the event bus, injected so the domain has no NATS in it. */
export interface ImageServicePorts {
  /** snapshot-service `unpack`: the top chainID and how many layers were applied or skipped. */
  unpack: (layers: Descriptor[], diffIds: string[], ns: string) => Promise<UnpackReply>;
  /** snapshot-service `gc`; best effort. */
  snapshotGc: (ns: string) => Promise<void>;
  /**
   * task-service `list-containers` filtered by this node and image names/digests: the ids of the
   * namespace's containers on this node that use one of `images`. Container records are the
   * task-service's; the image-service never reads them itself.
   */
  containersUsing: (ns: string, images: string[]) => Promise<string[]>;
  /** Publishes an event (pull/push progress). */
  publish: (topic: string, ns: string, event: unknown) => void;
}

/** Construction options of the image-service domain object. */
export interface ImageServiceOptions {
  redis: Redis;
  node: string;
  settings: ImageSettings;
  blobsDir: string;
  ingestDir: string;
  ports: ImageServicePorts;
  log: Logger;
  /** Where registry credentials come from when a request carries none (docker config.json). */
  dockerConfig?: string;
}

/**
 * The image-service's work, independent of NATS: pull, list, get, remove, tag, gc, and (in their
 * own modules) push, import and export. Handlers call these with the request's namespace.
 */
export class ImageService {
  readonly content: ContentStore;
  readonly images: ImageStore;
  readonly tokens = new TokenCache();
  /** Collections a removal with `gcLater` left to run after its reply. */
  readonly gcLater: GcLater;

  constructor(readonly o: ImageServiceOptions) {
    this.content = new ContentStore({
      blobsDir: o.blobsDir,
      ingestDir: o.ingestDir,
      redis: o.redis,
      node: o.node,
      lockTtlMs: o.settings.blobLockTtlMs,
      lockWaitMs: o.settings.blobLockWaitMs,
      log: o.log,
    });
    this.images = new ImageStore(o.redis, o.node, (topic, ns, e) => o.ports.publish(topic, ns, e));
    this.gcLater = new GcLater({
      redis: o.redis,
      node: o.node,
      log: o.log,
      delayMs: o.settings.gcDelayMs,
      collect: async (ns) => {
        // A snapshot collection that was skipped (its service down) keeps the note for a retry.
        const r = await this.gc(ns);
        if (r.snapshots !== 'done') throw new BerthError(Code.UNAVAILABLE, `snapshot gc ${r.snapshots}`);
      },
    });
  }

  /** A registry client that uses `auth` for the request's registry, else the docker config. */
  registry(auth?: RegistryAuth, authHost?: string): RegistryClient {
    return new RegistryClient({
      hosts: this.o.settings.hosts,
      insecureRegistries: this.o.settings.insecureRegistries,
      hostsFallback: (host) => hostsFromDirs(this.o.settings.hostsDirs, host),
      tokens: this.tokens,
      log: this.o.log,
      headersTimeoutMs: this.o.settings.progressTimeoutMs,
      credentials: async (host) => {
        if (auth && (!authHost || authHost === host)) return auth;
        return credentialsFromDockerConfig(host, this.o.dockerConfig);
      },
    });
  }

  /**
   * Checks credentials against a registry (docker login): a fresh token cache, so a token earned
   * with other credentials cannot make wrong ones pass. Nothing is stored.
   */
  async login(registry: string, auth: RegistryAuth): Promise<void> {
    const client = new RegistryClient({
      hosts: this.o.settings.hosts,
      insecureRegistries: this.o.settings.insecureRegistries,
      hostsFallback: (host) => hostsFromDirs(this.o.settings.hostsDirs, host),
      tokens: new TokenCache(),
      log: this.o.log,
      headersTimeoutMs: this.o.settings.progressTimeoutMs,
      credentials: async () => auth,
    });
    await client.checkLogin(registry);
  }

  /** Pulls an image; progress goes out as events on `images.pull.progress.<pullId>`. */
  async pull(req: PullImageRequest, ns: string, signal?: AbortSignal): Promise<PullReply> {
    const host = parseReference(req.ref).domain;
    return pullImage(
      {
        content: this.content,
        images: this.images,
        redis: this.o.redis,
        node: this.o.node,
        settings: this.o.settings,
        registry: (auth) => this.registry(auth, host),
        unpack: this.o.ports.unpack,
        publish: (p: PullProgress) => {
          if (req.pullId) this.o.ports.publish(`images.pull.progress.${req.pullId}`, ns, p);
        },
        log: this.o.log,
      },
      req,
      ns,
      signal,
    );
  }

  /** Pushes a local image (only blobs the registry lacks; cross-repository mounts when possible). */
  async push(req: PushImageRequest, ns: string): Promise<PushImageReply> {
    return pushImage(
      {
        content: this.content,
        images: this.images,
        registry: (auth, host) => this.registry(auth, host),
        publish: (p: PullProgress) => {
          if (req.pushId) this.o.ports.publish(`images.push.progress.${req.pushId}`, ns, p);
        },
        concurrency: this.o.settings.maxConcurrentDownloads,
      },
      req,
      ns,
    );
  }

  /** Imports an OCI layout or docker-save tar from a path on this host, then unpacks (best effort). */
  async import(req: ImportImageRequest, ns: string): Promise<ImportImageReply> {
    const r = await importArchive(
      {
        content: this.content,
        images: this.images,
        redis: this.o.redis,
        node: this.o.node,
        leaseTtlMs: this.o.settings.leaseTtlMs,
      },
      req,
      ns,
    );
    if (req.unpack !== false) {
      for (const rec of r.images) {
        try {
          await this.unpackRecord(ns, rec);
        } catch (err) {
          const e = toBerthError(err);
          this.o.log.warn(
            { image: rec.name, code: e.code, err: e.message },
            'unpack after import failed; image kept',
          );
        }
      }
    }
    return r;
  }

  /**
   * Unpacks an image already in the store into snapshots on this node and records the top chainID
   * in its record, so containers can be created from it (`berth image unpack`).
   */
  async unpack(ns: string, name: string): Promise<ImageUnpackReply> {
    const image = await this.get(ns, name);
    const r = await this.unpackRecord(ns, image);
    return { image, applied: r.applied, skipped: r.skipped };
  }

  private async unpackRecord(ns: string, rec: ImageRecord): Promise<UnpackReply> {
    const m = parseManifest(await this.content.read(rec.manifest.digest), rec.manifest.mediaType, rec.name);
    const r = await this.o.ports.unpack(m.layers, rec.config.rootfs.diff_ids, ns);
    rec.chainId = r.chainId;
    await this.images.put(ns, rec);
    return r;
  }

  /** Writes an OCI layout tar of images to a path on this host. */
  export(req: ExportImageRequest, ns: string): Promise<ExportImageReply> {
    return exportImages({ content: this.content, images: this.images }, req, ns);
  }

  /**
   * One page of the images, optionally filtered by `reference=<glob>` (docker's --filter), newest
   * first; the cursor is the position (update time, name) of the last image sent.
   */
  async list(ns: string, req: ListImagesRequest = {}): Promise<Page<ImageRecord>> {
    const all = await this.images.list(ns);
    const preds = await Promise.all(
      (req.filters ?? []).map((f) => parseFilter(f, (name) => this.images.find(ns, name))),
    );
    const after = req.cursor === undefined ? undefined : decodeCursor(req.cursor, 2, 'image list');
    const pos = (r: ImageRecord): [string, string] => [r.updatedAt, r.name];
    const page = all
      .filter((r) => (after === undefined || newerFirst(pos(r), after) > 0) && preds.every((p) => p(r)))
      .sort((a, b) => newerFirst(pos(a), pos(b)));
    return fillPage(page, { limit: req.limit, keyOf: pos });
  }

  /** One image by name or id prefix. */
  get(ns: string, name: string): Promise<ImageRecord> {
    return this.images.find(ns, name);
  }

  /** Gives an existing image another name. */
  async tag(ns: string, req: TagImageRequest): Promise<ImageRecord> {
    const src = await this.images.find(ns, req.source);
    const target = formatReference(parseReference(req.target));
    const now = new Date().toISOString();
    const rec: ImageRecord = { ...src, name: target, createdAt: now, updatedAt: now };
    await this.images.put(ns, rec);
    return rec;
  }

  /**
   * Removes an image name (or, given an id, every name of that image). Refuses while a container
   * record uses it, unless forced; then collects garbage (blobs, then snapshots, best effort).
   */
  async remove(ns: string, req: RemoveImageRequest): Promise<RemoveImageReply> {
    const rec = await this.images.find(ns, req.name);
    const byName = tryNormalize(req.name) === rec.name;
    const names = byName
      ? [rec.name]
      : (await this.images.list(ns)).filter((r) => r.configDigest === rec.configDigest).map((r) => r.name);
    if (!byName && names.length > 1 && !req.force) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `image "${req.name}" is referenced by ${names.length} names (${names.join(', ')}); remove them by name or use -f`,
      );
    }
    if (!req.force) {
      const user = await this.containerUsing(ns, rec);
      if (user) {
        throw new BerthError(
          Code.FAILED_PRECONDITION,
          `image "${rec.name}" is in use by container ${user}; stop and remove it first or use -f`,
        );
      }
    }
    for (const n of names) await this.images.delete(ns, n);
    const reply: RemoveImageReply = { removed: names };
    if (req.gcLater) await this.gcLater.request(ns);
    else if (req.gc !== false) reply.gc = await this.gc(ns);
    return reply;
  }

  /**
   * The id of a container on this node whose image is this one (by name or by any of its
   * digests), if any, as the task-service answers. When the task-service cannot answer, the use
   * cannot be checked and a non-forced removal is refused (UNAVAILABLE): removing an image a
   * container still names would break its restart; -f skips the check.
   */
  private async containerUsing(ns: string, rec: ImageRecord): Promise<string | undefined> {
    const images = [rec.name, rec.configDigest, rec.target.digest, rec.manifest.digest];
    let ids: string[];
    try {
      ids = await this.o.ports.containersUsing(ns, images);
    } catch (err) {
      const e = toBerthError(err);
      throw new BerthError(
        Code.UNAVAILABLE,
        `cannot check whether a container uses image "${rec.name}": ${e.message}; use -f to remove it without the check`,
        { cause: err },
      );
    }
    return ids.sort()[0];
  }

  /** Bytes and files the content store occupies (committed blobs, plus ingest entries as inodes). */
  async usage(): Promise<ContentUsageReply> {
    let bytes = 0;
    let blobs = 0;
    for (const f of await readdir(this.o.blobsDir).catch(() => [] as string[])) {
      const st = await stat(join(this.o.blobsDir, f)).catch(() => undefined);
      if (!st?.isFile()) continue;
      bytes += st.size;
      blobs++;
    }
    const ingests = (await readdir(this.o.ingestDir).catch(() => [] as string[])).length;
    return { path: this.o.blobsDir, bytes, blobs, inodes: blobs + ingests };
  }

  /** Garbage-collects unreferenced blobs and stale ingests, then asks the snapshot-service to collect. */
  async gc(ns: string): Promise<GcReply> {
    const r = await collectGarbage({
      redis: this.o.redis,
      node: this.o.node,
      content: this.content,
      images: this.images,
      blobsDir: this.o.blobsDir,
      ingestDir: this.o.ingestDir,
      log: this.o.log,
    });
    let snapshots = 'done';
    try {
      await this.o.ports.snapshotGc(ns);
    } catch (err) {
      const e = toBerthError(err);
      snapshots = `skipped: ${e.code}: ${e.message}`;
      this.o.log.warn({ code: e.code, err: e.message }, 'snapshot gc failed; continuing');
    }
    return { ...r, snapshots };
  }
}

/** When an image was created, as `berth images` shows it: the config's `created`, else the record's. */
function createdOf(r: ImageRecord): number {
  const t = Date.parse(r.config.created ?? '');
  return Number.isNaN(t) ? Date.parse(r.createdAt) : t;
}

/**
 * One `--filter` of `berth images`, as docker reads it: `reference=PATTERN` (glob on the name),
 * `label=KEY` or `label=KEY=VALUE` (the image config's labels), `dangling=true|false` (a name with
 * no tag, only a digest), `before=IMAGE` / `since=IMAGE` (created strictly before / after that
 * image, which `find` looks up and which must exist).
 */
async function parseFilter(
  f: string,
  find: (name: string) => Promise<ImageRecord>,
): Promise<(r: ImageRecord) => boolean> {
  const eq = f.indexOf('=');
  const key = eq > 0 ? f.slice(0, eq) : '';
  const val = eq > 0 ? f.slice(eq + 1) : '';
  if (key === 'before' || key === 'since') {
    if (!val) throw new BerthError(Code.INVALID_ARGUMENT, `invalid filter "${f}": ${key}=IMAGE`);
    const at = createdOf(await find(val));
    return key === 'before' ? (r) => createdOf(r) < at : (r) => createdOf(r) > at;
  }
  if (key === 'label') {
    const [lk, ...rest] = val.split('=');
    const lv = rest.length > 0 ? rest.join('=') : undefined;
    if (!lk)
      throw new BerthError(Code.INVALID_ARGUMENT, `invalid filter "${f}": label=KEY or label=KEY=VALUE`);
    return (r) => {
      const labels = r.config.config?.Labels ?? {};
      return Object.hasOwn(labels, lk) && (lv === undefined || labels[lk] === lv);
    };
  }
  if (key === 'dangling') {
    if (val !== 'true' && val !== 'false') {
      throw new BerthError(Code.INVALID_ARGUMENT, `invalid filter "${f}": dangling=true or dangling=false`);
    }
    const want = val === 'true';
    return (r) =>
      !/:[\w][\w.-]*$/.test(r.name.replace(/@sha256:[a-f0-9]+$/, '').replace(/^[^/]*\//, '')) === want;
  }
  if (key !== 'reference') {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid filter "${f}": supported are reference=PATTERN, label=KEY[=VALUE], dangling=true|false, before=IMAGE, since=IMAGE`,
    );
  }
  const re = globToRegExp(val);
  return (r) => {
    const full = r.name;
    const familiar = full.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
    const noTag = (s: string) => s.replace(/(:[\w][\w.-]*)?(@sha256:[a-f0-9]+)?$/, '');
    return [full, familiar, noTag(full), noTag(familiar)].some((s) => re.test(s));
  };
}

function globToRegExp(glob: string): RegExp {
  let s = '';
  for (const ch of glob) {
    if (ch === '*') s += '[^/]*';
    else if (ch === '?') s += '[^/]';
    else s += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${s}$`);
}

/** Orders [updatedAt, name] positions newest first (then by name, descending): > 0 when a comes after b. */
function newerFirst(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? '';
    const y = b[i] ?? '';
    if (x !== y) return x < y ? 1 : -1;
  }
  return 0;
}
