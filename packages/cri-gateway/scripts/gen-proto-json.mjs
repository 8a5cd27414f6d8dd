// Writes proto/api.json, the CRI proto as protobufjs' JSON descriptor, from proto/api.proto.
// The gateway loads the JSON at start instead of parsing the .proto (proto.ts says why);
// proto.test.ts fails when the two differ, so run `pnpm --filter @berth/cri-gateway run gen:proto`
// after editing the .proto.
import { renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const protoPath = fileURLToPath(new URL('../proto/api.proto', import.meta.url));
const jsonPath = fileURLToPath(new URL('../proto/api.json', import.meta.url));

// keepCase as in proto.ts's CRI_LOADER_OPTIONS: field names stay as on the wire (snake_case).
const root = new protobuf.Root().loadSync(protoPath, { keepCase: true });
const text = `${JSON.stringify(root.toJSON(), null, 1)}\n`;
const tmp = `${jsonPath}.${process.pid}.tmp`;
writeFileSync(tmp, text);
renameSync(tmp, jsonPath);
