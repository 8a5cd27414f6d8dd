export { type Gateway, GrpcServerKind, natsProbe, PROBE_TIMEOUT_MS, startGateway } from './gateway.js';
export { type BerthCriServer, createBerthCriServer } from './grpc/berth-server.js';
export { listenUnix, type UnixListener } from './grpc/listen.js';
export { createCriServer } from './grpc/server.js';
export { withEncoding } from './handlers/encoded-reply.js';
export { implemented, implementedStreams } from './handlers/index.js';
export {
  CRI_DESCRIPTOR_PATH,
  CRI_LOADER_OPTIONS,
  CRI_PROTO_PATH,
  CriService,
  criServiceDefinition,
} from './proto.js';
export { loadCriDefinition } from './proto-package.js';
export { runtimeVersion } from './runtime/version.js';
export { createHandlers } from './service.js';
