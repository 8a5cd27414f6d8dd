import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import type { Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs/light.js';

/** Path of berth's copy of the CRI v1 proto (wire-identical to k8s.io/cri-api). */
export const CRI_PROTO_PATH = fileURLToPath(new URL('../proto/api.proto', import.meta.url));

/**
 * Path of the same proto as protobufjs' JSON descriptor (scripts/gen-proto-json.mjs writes it;
 * proto.test.ts checks that it matches the .proto).
 */
export const CRI_DESCRIPTOR_PATH = fileURLToPath(new URL('../proto/api.json', import.meta.url));

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

// The gateway builds its two service definitions from the JSON descriptor with protobufjs' light
// build rather than with proto-loader: parsing the .proto and making a descriptor of every message
// (what proto-loader does, for reflection the gateway never serves) took 100-390 ms of each start.
// The codecs are proto-loader's own, so handlers see the very same messages.

/** Reads the JSON descriptor and resolves it into protobufjs types. */
function loadRoot(): protobuf.Root {
  // Resolved as a whole, as proto-loader does, so every field's type is known before first use.
  if (!root) {
    root = protobuf.Root.fromJSON(JSON.parse(readFileSync(CRI_DESCRIPTOR_PATH, 'utf8')));
    root.resolveAll();
  }
  return root;
}
let root: protobuf.Root | undefined;

/** Encodes a plain object as `type`, as proto-loader's serializers do. */
function serializer(type: protobuf.Type): (value: object) => Buffer {
  return (value) => {
    if (Array.isArray(value)) {
      throw new Error(`cannot serialize an array as ${type.fullName.slice(1)}`);
    }
    return Buffer.from(type.encode(type.fromObject(value)).finish());
  };
}

/** Decodes bytes of `type` into a plain object shaped by CRI_LOADER_OPTIONS. */
function deserializer(type: protobuf.Type): (bytes: Buffer) => object {
  return (bytes) => type.toObject(type.decode(bytes), CRI_LOADER_OPTIONS as protobuf.IConversionOptions);
}

/** The gRPC service definition of one CRI service (built once per service). */
export function criServiceDefinition(service: CriService): ServiceDefinition {
  const known = definitions.get(service);
  if (known) return known;
  const svc = loadRoot().lookup(service);
  if (!(svc instanceof protobuf.Service)) {
    throw new Error(`${CRI_DESCRIPTOR_PATH} defines no service ${service}`);
  }
  const def: Record<string, MethodDefinition<object, object>> = {};
  for (const method of svc.methodsArray) {
    const req = method.resolvedRequestType;
    const res = method.resolvedResponseType;
    if (!req || !res) throw new Error(`${service}/${method.name}: unresolved message types`);
    def[method.name] = {
      path: `/${service}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: serializer(req),
      requestDeserialize: deserializer(req),
      responseSerialize: serializer(res),
      responseDeserialize: deserializer(res),
      originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
    };
  }
  definitions.set(service, def);
  return def;
}
const definitions = new Map<CriService, ServiceDefinition>();
