import { BERTH_VERSION, CriApi, Service } from '@berth/api';
import { type ServiceContext, type ServiceEntry, type ServiceSetup, serviceSetting } from '@berth/kit';
import { z } from 'zod';
import { GrpcServerKind, startGateway } from './gateway.js';
import { DEFAULT_PAUSE_BINARY, DEFAULT_SANDBOX_IMAGE } from './runtime/pause-image.js';
import { createHandlers } from './service.js';

// Leaves room inside runService's hard stop (grace + 5 s) after the NATS side has drained.
const GRPC_CLOSE_MS = 3000;

/** Sets the cri-gateway up on connections already made: its process main and a co-hosted one call it. */
export async function start(ctx: ServiceContext): Promise<ServiceSetup<typeof CriApi>> {
  const socket = serviceSetting(
    ctx.config,
    Service.cri,
    'socket',
    z.string().startsWith('/', 'must be an absolute path'),
    ctx.layout.run.criSocket,
  );
  const gateway = await startGateway({
    nc: ctx.nc,
    node: ctx.node,
    socket,
    runRoot: ctx.layout.runRoot,
    snapshotsDir: ctx.layout.snapshots,
    containersDir: ctx.layout.containers,
    sandboxImage: serviceSetting(
      ctx.config,
      Service.cri,
      'sandboxImage',
      z.string().min(1),
      DEFAULT_SANDBOX_IMAGE,
    ),
    pauseBinary: serviceSetting(
      ctx.config,
      Service.cri,
      'pauseBinary',
      z.string().startsWith('/', 'must be an absolute path'),
      DEFAULT_PAUSE_BINARY,
    ),
    streaming: serviceSetting(
      ctx.config,
      Service.cri,
      'streaming',
      z
        .object({
          host: z.string().min(1).optional(),
          port: z.number().int().min(0).max(65535).optional(),
          advertiseHost: z.string().min(1).optional(),
        })
        .strict(),
      {},
    ),
    networkCollectMs: serviceSetting(
      ctx.config,
      Service.cri,
      'networkCollectMs',
      z.number().int().min(0),
      60_000,
    ),
    grpcServer: serviceSetting(
      ctx.config,
      Service.cri,
      'grpcServer',
      z.enum([GrpcServerKind.berth, GrpcServerKind.grpcJs]),
      GrpcServerKind.berth,
    ),
    log: ctx.log,
  });
  return {
    handlers: createHandlers(),
    checks: async () => ({ grpc: gateway.listening() ? 'ok' : 'not listening' }),
    close: () => gateway.close(GRPC_CLOSE_MS),
  };
}

/** The cri-gateway as runService and runCohosted start it. */
export const entry: ServiceEntry<typeof CriApi> = { service: CriApi, version: BERTH_VERSION, setup: start };
