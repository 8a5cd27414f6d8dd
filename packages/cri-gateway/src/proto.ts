import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options, type PackageDefinition } from '@grpc/proto-loader';

/** Path of berth's copy of the CRI v1 proto (wire-identical to k8s.io/cri-api). */
export const CRI_PROTO_PATH = fileURLToPath(new URL('../proto/api.proto', import.meta.url));

/**
 * How messages look in JavaScript: field names as on the wire (snake_case), 64-bit integers as
 * strings (nanosecond timestamps do not fit a double), enums by name, defaults filled in.
 */
export const CRI_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The two CRI services. */
export const CriService = {
  runtime: 'runtime.v1.RuntimeService',
  image: 'runtime.v1.ImageService',
} as const;
export type CriService = (typeof CriService)[keyof typeof CriService];

/** Loads the CRI proto once; the result is what grpc-js servers and clients are built from. */
export function loadCriDefinition(): PackageDefinition {
  cached ??= loadSync(CRI_PROTO_PATH, CRI_LOADER_OPTIONS);
  return cached;
}
let cached: PackageDefinition | undefined;

/** The gRPC service definition of one CRI service. */
export function criServiceDefinition(service: CriService): ServiceDefinition {
  const def = loadCriDefinition()[service];
  // Message and enum definitions carry a `format`; service definitions are maps of methods.
  if (!def || 'format' in def) throw new Error(`${CRI_PROTO_PATH} defines no service ${service}`);
  return def as ServiceDefinition;
}
