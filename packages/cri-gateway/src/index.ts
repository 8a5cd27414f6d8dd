export { type Gateway, natsProbe, PROBE_TIMEOUT_MS, startGateway } from './gateway.js';
export {
  CRI_LOADER_OPTIONS,
  CRI_PROTO_PATH,
  CriService,
  criServiceDefinition,
  loadCriDefinition,
} from './proto.js';
export { runtimeVersion } from './runtime/version.js';
export { createHandlers } from './service.js';
