import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { type Descriptor, Service, type UnpackReply } from '@berth/api';
import { call, publishEvent, type ServiceContext } from '@berth/kit';
import { exportEndpoint } from './handlers/export.js';
import { gcEndpoint } from './handlers/gc.js';
import { getEndpoint } from './handlers/get.js';
import { importEndpoint } from './handlers/import.js';
import { listEndpoint } from './handlers/list.js';
import { pullEndpoint } from './handlers/pull.js';
import { pushEndpoint } from './handlers/push.js';
import { removeEndpoint } from './handlers/remove.js';
import { tagEndpoint } from './handlers/tag.js';
import { unpackEndpoint } from './handlers/unpack.js';
import { usageEndpoint } from './handlers/usage.js';
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
      unpack: async (layers: Descriptor[], diffIds: string[], ns: string) => {
        const r = await call<UnpackReply>(
          ctx.nc,
          Service.snapshot,
          'unpack',
          { layers, diffIds },
          {
            node,
            namespace: ns,
            timeoutMs: settings.unpackTimeoutMs,
          },
        );
        return r;
      },
      snapshotGc: async (ns: string) => {
        await call(ctx.nc, Service.snapshot, 'gc', {}, { node, namespace: ns, timeoutMs: 120_000 });
      },
      publish: (topic, ns, event) => publishEvent(ctx.nc, topic, ns, event),
    },
  });
}

/** The operations of the image-service, one handler file each. */
export function createEndpoints(ctx: ServiceContext) {
  const svc = createImageService(ctx);
  return {
    pull: pullEndpoint(svc),
    list: listEndpoint(svc),
    get: getEndpoint(svc),
    unpack: unpackEndpoint(svc),
    remove: removeEndpoint(svc),
    tag: tagEndpoint(svc),
    gc: gcEndpoint(svc),
    usage: usageEndpoint(svc),
    push: pushEndpoint(svc),
    import: importEndpoint(svc),
    export: exportEndpoint(svc),
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
