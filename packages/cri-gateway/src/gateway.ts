import type { InfoReply, Service } from '@berth/api';
import { call, type Logger } from '@berth/kit';
import type { NatsConnection } from 'nats';
import { listenUnix } from './grpc/listen.js';
import { createCriServer } from './grpc/server.js';
import { implemented, implementedStreams } from './handlers/index.js';
import { natsImagePort, natsSnapshotPort } from './images/nats-ports.js';
import type { InfoProbe } from './runtime/status.js';

/** How long Status waits for a service's `info`: well inside the kubelet's own deadline. */
export const PROBE_TIMEOUT_MS = 2000;

/** A running CRI gateway: its socket and how to stop it. */
export interface Gateway {
  readonly socket: string;
  listening(): boolean;
  close(graceMs: number): Promise<void>;
}

/** Builds the Status probe: `info` of a service over NATS, addressed to this node for the shim. */
export function natsProbe(nc: NatsConnection, node: string, timeoutMs = PROBE_TIMEOUT_MS): InfoProbe {
  return (service: Service) => call<InfoReply>(nc, service, 'info', {}, { node, timeoutMs });
}

/** Starts the CRI v1 gRPC server on a unix socket, answering from the services on NATS. */
export async function startGateway(opts: {
  nc: NatsConnection;
  node: string;
  socket: string;
  /** berth's run root: a socket directory inside it is forced to mode 0700. */
  runRoot: string;
  /** The node's snapshots directory (layout.snapshots): the image filesystem ImageFsInfo reports. */
  snapshotsDir: string;
  log: Logger;
  probeTimeoutMs?: number;
}): Promise<Gateway> {
  const log = opts.log.child({ cri: opts.socket });
  const server = createCriServer({
    deps: {
      probe: natsProbe(opts.nc, opts.node, opts.probeTimeoutMs),
      log,
      images: natsImagePort(opts.nc, opts.node),
      snapshots: natsSnapshotPort(opts.nc, opts.node),
      snapshotsDir: opts.snapshotsDir,
    },
    handlers: implemented,
    streams: implementedStreams,
  });
  const listener = await listenUnix(server, opts.socket, opts.runRoot, {
    onProtocolError: (err) => log.warn({ err }, 'CRI client connection closed: undecodable HTTP/2 headers'),
  });
  let open = true;
  log.info('CRI gRPC server listening');
  return {
    socket: opts.socket,
    listening: () => open,
    async close(graceMs: number) {
      if (!open) return;
      open = false;
      await listener.close(graceMs);
    },
  };
}
