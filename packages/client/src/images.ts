import {
  BerthError,
  Code,
  type ContentUsageReply,
  type ExportImageReply,
  type GcReply,
  ImageApi,
  type ImageRecord,
  type PullProgress,
  type PullReply,
  type PushImageReply,
  pullProgressTopic,
  pushProgressTopic,
  type RegistryAuth,
  type RemoveImageReply,
} from '@berth/api';
import { collectAll } from '@berth/kit/paging';
import type { RequestOptions, Scope } from './scope.js';
import { runTransfer, type Transfer, transferId } from './transfer.js';

/** Options of {@link Images.pull}. */
export interface PullOptions {
  /** os/arch[/variant]; default the node's. */
  platform?: string;
  /** Unpack into snapshots after pulling (default true): needed before a container can use it. */
  unpack?: boolean;
  /** Credentials for the reference's registry, sent with this request only. */
  auth?: RegistryAuth;
  /** Called with each progress event as it arrives. */
  onProgress?: (progress: PullProgress) => void;
  /** Fail with UNAVAILABLE after this long without a progress event (default 30 s). */
  silenceMs?: number;
}

/** Options of {@link Images.push}. */
export interface PushOptions {
  /** Where to push; default the image's own name. */
  ref?: string;
  auth?: RegistryAuth;
  onProgress?: (progress: PullProgress) => void;
  silenceMs?: number;
}

/** The images of the connection's node and namespace (the node's image-service). */
export class Images {
  constructor(private readonly scope: Scope) {}

  /**
   * Pulls an image onto the node (and unpacks it) and resolves with the stored record. Progress
   * comes to `onProgress`; use {@link Images.pullWithProgress} to read it as an async iterator.
   */
  pull(ref: string, opts: PullOptions = {}): Promise<PullReply> {
    return this.pullWithProgress(ref, opts).result;
  }

  /**
   * Starts a pull and returns its progress as an async iterator (`for await (const p of t)`),
   * ending when the pull does, plus `result`, the final reply. Progress events are published on
   * `berth.events.images.pull.progress.<pullId>`; the SDK subscribes before it sends the request.
   */
  pullWithProgress(ref: string, opts: PullOptions = {}): Transfer<PullReply> {
    const pullId = transferId();
    const { onProgress, silenceMs, ...rest } = opts;
    return runTransfer(
      this.scope,
      {
        topic: pullProgressTopic(pullId),
        what: `pull of "${ref}"`,
        ...(onProgress ? { onProgress } : {}),
        ...(silenceMs !== undefined ? { silenceMs } : {}),
      },
      () => this.scope.call(ImageApi, 'pull', { ref, pullId, ...rest }),
    );
  }

  /**
   * The image `ref` on the node: its record when it is there, else pulled (as `docker run` does).
   * Other errors than NOT_FOUND from the lookup are thrown as they are.
   */
  async ensure(ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
    try {
      return await this.get(ref);
    } catch (err) {
      if (!(err instanceof BerthError) || err.code !== Code.NOT_FOUND) throw err;
    }
    return (await this.pull(ref, opts)).image;
  }

  /** Pushes the local image `name` to a registry; progress as for a pull. */
  push(name: string, opts: PushOptions = {}): Transfer<PushImageReply> {
    const pushId = transferId();
    const { onProgress, silenceMs, ...rest } = opts;
    return runTransfer(
      this.scope,
      {
        topic: pushProgressTopic(pushId),
        what: `push of "${name}"`,
        ...(onProgress ? { onProgress } : {}),
        ...(silenceMs !== undefined ? { silenceMs } : {}),
      },
      () => this.scope.call(ImageApi, 'push', { name, pushId, ...rest }),
    );
  }

  /**
   * Lists the images of the namespace, newest first (every page); filters as `docker images
   * --filter` (`reference=glob`).
   */
  async list(filters?: string[], opts?: RequestOptions): Promise<ImageRecord[]> {
    const page = (input: { filters?: string[]; cursor?: string }) =>
      this.scope.call(ImageApi, 'list', input, opts);
    return collectAll(page, filters ? { filters } : {}, 'images');
  }

  /** Gets one image by name, digest or id prefix; NOT_FOUND when there is none. */
  get(name: string, opts?: RequestOptions): Promise<ImageRecord> {
    return this.scope.call(ImageApi, 'get', { name }, opts);
  }

  /** Removes an image name (`force`: even if a container uses it), then collects garbage unless `gc: false`. */
  remove(
    name: string,
    o: { force?: boolean; gc?: boolean } & RequestOptions = {},
  ): Promise<RemoveImageReply> {
    const { timeoutMs, ...rest } = o;
    return this.scope.call(ImageApi, 'remove', { name, ...rest }, timeoutMs ? { timeoutMs } : {});
  }

  /** Gives an existing image a new name. */
  tag(source: string, target: string, opts?: RequestOptions): Promise<ImageRecord> {
    return this.scope.call(ImageApi, 'tag', { source, target }, opts);
  }

  /**
   * Imports an OCI image-layout tar or a docker-save tar. `path` is absolute and on the node's
   * filesystem (the image-service reads it there): nothing is streamed through NATS.
   */
  async import(
    path: string,
    o: { name?: string; unpack?: boolean } & RequestOptions = {},
  ): Promise<ImageRecord[]> {
    const { timeoutMs, ...rest } = o;
    return (await this.scope.call(ImageApi, 'import', { path, ...rest }, timeoutMs ? { timeoutMs } : {}))
      .images;
  }

  /** Writes an OCI image-layout tar of `names` to an absolute `path` on the node's filesystem. */
  export(names: string[], path: string, opts?: RequestOptions): Promise<ExportImageReply> {
    return this.scope.call(ImageApi, 'export', { names, path }, opts);
  }

  /** Unpacks an image's layers into snapshots (a pull does it unless told not to). */
  async unpack(name: string, opts?: RequestOptions): Promise<ImageRecord> {
    return (await this.scope.call(ImageApi, 'unpack', { name }, opts)).image;
  }

  /** Disk used by the node's content store. */
  usage(opts?: RequestOptions): Promise<ContentUsageReply> {
    return this.scope.call(ImageApi, 'usage', {}, opts);
  }

  /** Removes blobs no image holds. */
  gc(opts?: RequestOptions): Promise<GcReply> {
    return this.scope.call(ImageApi, 'gc', {}, opts);
  }
}
