import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { type Descriptor, type ImageApi, SnapshotApi, TaskApi } from '@berth/api';
import { call, type Handlers, publishEvent, type ServiceContext } from '@berth/kit';
import { ClientLeases } from './content/client-leases.js';
import { chainRoots } from './handlers/chain-roots.js';
import { exportImages } from './handlers/export.js';
import { gc } from './handlers/gc.js';
import { get } from './handlers/get.js';
import { importImages } from './handlers/import.js';
import { leaseHandlers } from './handlers/leases.js';
import { list } from './handlers/list.js';
import { login } from './handlers/login.js';
import { pull } from './handlers/pull.js';
import { push } from './handlers/push.js';
import { remove } from './handlers/remove.js';
import { tag } from './handlers/tag.js';
import { unpack } from './handlers/unpack.js';
import { usage } from './handlers/usage.js';
import { ImageService } from './images/service-core.js';
import { loadImageSettings } from './settings.js';

/** Builds the image-service domain object from a service context (NATS calls become its ports). */
export function createImageService(ctx: ServiceContext): ImageService {
  const settings = loadImageSettings(ctx.config);
  const node = ctx.node;
  return new ImageService({
    redis: ctx.redis,
    node,
    settings,
    blobsDir: ctx.layout.content.blobs,
    ingestDir: ctx.layout.content.ingest,
    log: ctx.log,
    ports: {
      unpack: (layers: Descriptor[], diffIds: string[], ns: string) =>
        call(
          ctx.nc,
          SnapshotApi,
          'unpack',
          { layers, diffIds },
          { node, namespace: ns, timeoutMs: settings.unpackTimeoutMs },
        ),
      snapshotGc: async (ns: string) => {
        await call(ctx.nc, SnapshotApi, 'gc', {}, { node, namespace: ns });
      },
      containersUsing: async (ns: string, images: string[]) => {
        // One is enough to refuse the removal: a page of one, however many use the image.
        const r = await call(
          ctx.nc,
          TaskApi,
          'list-containers',
          { node, images, limit: 1 },
          { namespace: ns },
        );
        return r.containers.map((i) => i.container.id);
      },
      publish: (topic, ns, event) => publishEvent(ctx.nc, topic, ns, event),
    },
  });
}

/** The handlers of the image-service's operations (ImageApi), one file each. */
export function createHandlers(svc: ImageService): Handlers<typeof ImageApi> {
  return {
    pull: pull(svc),
    list: list(svc),
    get: get(svc),
    unpack: unpack(svc),
    remove: remove(svc),
    tag: tag(svc),
    gc: gc(svc),
    usage: usage(svc),
    push: push(svc),
    import: importImages(svc),
    export: exportImages(svc),
    login: login(svc),
    'chain-roots': chainRoots(svc),
    ...leaseHandlers(new ClientLeases(svc.o.redis, svc.o.node)),
  };
}

/** Health of the content store for `info`: its directories exist (or can be made) and are writable. */
export async function contentChecks(ctx: ServiceContext): Promise<Record<string, string>> {
  const dirs = [ctx.layout.content.blobs, ctx.layout.content.ingest];
  try {
    for (const d of dirs) {
      await mkdir(d, { recursive: true });
      await access(d, constants.W_OK);
    }
    return { content: 'ok' };
  } catch (err) {
    return { content: `content store not writable: ${(err as Error).message}` };
  }
}
