import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { CRI_LOADER_OPTIONS, CRI_PROTO_PATH } from './proto.js';

/**
 * Loads the CRI proto once with proto-loader, as a whole package definition (messages' descriptors
 * included) for grpc-js clients: tests, benches and tools. The gateway itself does not load it
 * (proto.ts's criServiceDefinition is what it serves from).
 */
export function loadCriDefinition(): PackageDefinition {
  cached ??= loadSync(CRI_PROTO_PATH, CRI_LOADER_OPTIONS);
  return cached;
}
let cached: PackageDefinition | undefined;
