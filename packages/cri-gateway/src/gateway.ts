import { type Service, serviceDefs } from '@berth/api';
import { call, type Logger, podNetnsDir, subscribeEvents } from '@berth/kit';
import { attach, resizeTerminal } from '@berth/shim/attach';
import type { NatsConnection } from 'nats';
import { createBerthCriServer } from './grpc/berth-server.js';
import { listenUnix } from './grpc/listen.js';
import { createCriServer } from './grpc/server.js';
import { implemented, implementedStreams } from './handlers/index.js';
import { ImageView } from './images/image-view.js';
import { natsImagePort, natsSnapshotPort } from './images/nats-ports.js';
import { normalizeRef } from './images/resolve.js';
import { CniPodNetwork } from './runtime/cni-network.js';
import { ContainerView, RESYNC_MS } from './runtime/container-view.js';
import { ContainerRuntime } from './runtime/containers.js';
import type { EventSource } from './runtime/events.js';
import { natsImageImporter, natsShimNetworkPort, natsShimPort, natsTaskPort } from './runtime/nats-ports.js';
import { SandboxImage } from './runtime/pause-image.js';
import { PodRuntime } from './runtime/pods.js';
import { NsenterPortRelay } from './runtime/port-relay.js';
import type { PodNetwork } from './runtime/ports.js';
import { StatsRuntime } from './runtime/stats.js';
import type { InfoProbe } from './runtime/status.js';
import { StreamUrls } from './runtime/stream-urls.js';
import { BerthStreamingBackend } from './runtime/streaming-backend.js';
import { createStreamingServer } from './streaming/index.js';

/** How long Status waits for a service's `info`: well inside the kubelet's own deadline. */
export const PROBE_TIMEOUT_MS = 2000;

/** The gRPC servers the gateway can serve the CRI with (`services.cri-gateway.grpcServer`). */
export const GrpcServerKind = { berth: 'berth', grpcJs: 'grpc-js' } as const;
export type GrpcServerKind = (typeof GrpcServerKind)[keyof typeof GrpcServerKind];

/** A running CRI gateway: its socket and how to stop it. */
export interface Gateway {
  readonly socket: string;
  /** Base URL of the streaming server behind Exec, Attach and PortForward. */
  readonly streamingUrl: string;
  listening(): boolean;
  close(graceMs: number): Promise<void>;
}

/** Builds the Status probe: `info` of a service over NATS, addressed to this node for the shim. */
export function natsProbe(nc: NatsConnection, node: string, timeoutMs = PROBE_TIMEOUT_MS): InfoProbe {
  return (service: Service) => call(nc, serviceDefs[service], 'info', {}, { node, timeoutMs });
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
  /** The node's containers directory (layout.containers), where shims write pods' /etc files. */
  containersDir: string;
  /** The sandbox (pause) image; built from `pauseBinary` when absent (default pause-image.ts). */
  sandboxImage?: string;
  pauseBinary?: string;
  /** The pod network; default the node's shim's CNI network (network-* ops). */
  network?: PodNetwork;
  /** Where the streaming server listens (default 127.0.0.1, a free port) and the host in its URLs. */
  streaming?: { host?: string; port?: number; advertiseHost?: string };
  log: Logger;
  probeTimeoutMs?: number;
  /**
   * How often pod networks no pod owns are torn down (default 60 s; 0: only at start). A teardown
   * that failed while a service or NATS was down (RunPodSandbox undoing itself) is retried so.
   */
  networkCollectMs?: number;
  /**
   * Which gRPC server carries the CRI: "berth" (default), berth's own HTTP/2 on the socket, or
   * "grpc-js", @grpc/grpc-js behind the authority front (the server berth ran before).
   */
  grpcServer?: GrpcServerKind;
}): Promise<Gateway> {
  const log = opts.log.child({ cri: opts.socket });
  // One subscription per event family the gateway reads (containers.*, tasks.*: the container
  // view, pods and GetContainerEvents; images.*: the image view), shared by the views and each
  // GetContainerEvents stream: an event is decoded (and its consumer span made) once, however many
  // listen. Not every event (`>`): each container's snapshot prepare and remove, and each pull's
  // progress, would wake the gateway to decode and trace a message nobody reads.
  const listeners = new Set<Parameters<EventSource>[0]>();
  const deliver: Parameters<EventSource>[0] = (env) => {
    for (const l of listeners) l(env);
  };
  const eventSubs = [
    subscribeEvents(opts.nc, 'containers.*', deliver),
    subscribeEvents(opts.nc, 'tasks.*', deliver),
    subscribeEvents(opts.nc, 'images.*', deliver),
  ];
  const unsubscribeEvents = () => {
    for (const sub of eventSubs) sub.unsubscribe();
  };
  const events: EventSource = (onEvent) => {
    listeners.add(onEvent);
    return () => listeners.delete(onEvent);
  };
  // The kubelet's constant reads answer from memory (see container-view.ts and image-view.ts).
  const view = new ContainerView(natsTaskPort(opts.nc, opts.node), opts.node, (err) =>
    log.warn({ err }, 'container view: a refresh failed'),
  );
  const images = new ImageView(natsImagePort(opts.nc, opts.node), (err) =>
    log.warn({ err }, 'image view: a refresh failed'),
  );
  await Promise.all([
    // A service may not answer yet at boot: reads go to it until the next resync loads.
    view.follow(events).catch((err: unknown) => log.warn({ err }, 'container view: first load failed')),
    images
      .follow(events, RESYNC_MS)
      .catch((err: unknown) => log.warn({ err }, 'image view: first load failed')),
  ]);
  // Events sent while the connection was down are lost: read everything again once it is back.
  void (async () => {
    for await (const s of opts.nc.status()) {
      if (s.type !== 'reconnect') continue;
      for (const v of [view, images]) v.resync().catch((err: unknown) => log.warn({ err }, 'resync failed'));
    }
  })();
  const runtime = {
    tasks: view,
    shim: natsShimPort(opts.nc, opts.node),
    images,
    network:
      opts.network ?? new CniPodNetwork(natsShimNetworkPort(opts.nc, opts.node), podNetnsDir(opts.runRoot)),
    sandboxImage: new SandboxImage(
      images,
      natsImageImporter(opts.nc, opts.node),
      opts.sandboxImage,
      opts.pauseBinary,
    ),
    containersDir: opts.containersDir,
    log,
    events,
  };
  const pods = new PodRuntime(runtime);
  const containers = new ContainerRuntime(runtime, pods);
  const snapshots = natsSnapshotPort(opts.nc, opts.node);
  const stats = new StatsRuntime(
    { tasks: runtime.tasks, snapshots, snapshotsDir: opts.snapshotsDir },
    pods,
    containers,
  );
  const streaming = await createStreamingServer({
    backend: new BerthStreamingBackend({
      tasks: runtime.tasks,
      containers,
      pods,
      console: { attach, resize: resizeTerminal },
      relay: new NsenterPortRelay(),
      log,
    }),
    ...opts.streaming,
  });
  const deps = {
    probe: natsProbe(opts.nc, opts.node, opts.probeTimeoutMs),
    log,
    images,
    pinned: new Set([normalizeRef(runtime.sandboxImage.name)]),
    pods,
    containers,
    stats,
    streams: new StreamUrls(streaming, containers, pods),
    events,
    snapshots,
    snapshotsDir: opts.snapshotsDir,
  };
  let listener: Awaited<ReturnType<typeof listenUnix>>;
  try {
    if ((opts.grpcServer ?? 'berth') === 'berth') {
      const server = createBerthCriServer({
        deps,
        handlers: implemented,
        streams: implementedStreams,
        onProtocolError: (err) => log.warn({ err }, 'CRI client connection closed: HTTP/2 protocol error'),
      });
      listener = await listenUnix(server, opts.socket, opts.runRoot);
    } else {
      const server = createCriServer({ deps, handlers: implemented, streams: implementedStreams });
      listener = await listenUnix(server, opts.socket, opts.runRoot, {
        onProtocolError: (err) =>
          log.warn({ err }, 'CRI client connection closed: undecodable HTTP/2 headers'),
      });
    }
  } catch (err) {
    await streaming.close();
    view.close();
    images.close();
    unsubscribeEvents();
    throw err;
  }
  let open = true;
  log.info({ streaming: streaming.baseUrl }, 'CRI gRPC server listening');
  // Pod networks no pod owns: left by a previous gateway, or by a RunPodSandbox whose undoing
  // failed while a service or NATS was down. Collected at start (the task-service may not answer
  // yet) and then every networkCollectMs. The shim's records are the list (network-list).
  let collecting = false;
  const collect = () => {
    if (collecting) return;
    collecting = true;
    pods
      .collectNetworks()
      .then(
        (freed) => {
          if (freed.length) log.info({ freed }, 'tore down pod networks no pod owns');
        },
        (err: unknown) => log.warn({ err }, 'could not collect orphaned pod networks'),
      )
      .finally(() => {
        collecting = false;
      });
  };
  collect();
  const collectMs = opts.networkCollectMs ?? 60_000;
  const collector = collectMs > 0 ? setInterval(collect, collectMs).unref() : undefined;
  return {
    socket: opts.socket,
    streamingUrl: streaming.baseUrl,
    listening: () => open,
    async close(graceMs: number) {
      if (!open) return;
      open = false;
      clearInterval(collector);
      await Promise.all([listener.close(graceMs), streaming.close()]);
      view.close();
      images.close();
      unsubscribeEvents();
    },
  };
}
