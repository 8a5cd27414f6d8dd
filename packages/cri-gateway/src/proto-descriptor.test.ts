import { readFile } from 'node:fs/promises';
import type { MethodDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  CRI_DESCRIPTOR_PATH,
  CRI_LOADER_OPTIONS,
  CRI_PROTO_PATH,
  CriService,
  criServiceDefinition,
} from './proto.js';

/** The JSON descriptor scripts/gen-proto-json.mjs makes from the proto text given. */
function descriptorOf(protoText: string): unknown {
  const root = new protobuf.Root();
  protobuf.parse(protoText, root, { keepCase: true });
  return root.toJSON();
}

type Method = MethodDefinition<object, object>;
const viaLoader = loadSync(CRI_PROTO_PATH, CRI_LOADER_OPTIONS);

describe('the CRI JSON descriptor (proto/api.json)', () => {
  it('is what proto/api.proto makes now (run `pnpm --filter @berth/cri-gateway run gen:proto` after editing it)', async () => {
    const committed = JSON.parse(await readFile(CRI_DESCRIPTOR_PATH, 'utf8'));
    expect(committed).toEqual(descriptorOf(await readFile(CRI_PROTO_PATH, 'utf8')));
  });

  it('(control) differs once a field number or a streaming flag of the proto changes', async () => {
    const committed = JSON.parse(await readFile(CRI_DESCRIPTOR_PATH, 'utf8'));
    const text = await readFile(CRI_PROTO_PATH, 'utf8');
    for (const [from, to] of [
      ['string runtime_api_version = 4;', 'string runtime_api_version = 5;'],
      ['returns (stream StreamImagesResponse)', 'returns (StreamImagesResponse)'],
    ] as const) {
      const broken = text.replace(from, to);
      expect(broken).not.toBe(text);
      expect(descriptorOf(broken)).not.toEqual(committed);
    }
  });
});

describe('criServiceDefinition against proto-loader', () => {
  for (const service of Object.values(CriService)) {
    it(`${service}: same methods, paths, streaming flags and names`, () => {
      const ours = criServiceDefinition(service);
      const theirs = viaLoader[service] as unknown as Record<string, Method>;
      expect(Object.keys(ours).sort()).toEqual(Object.keys(theirs).sort());
      for (const [name, m] of Object.entries(ours)) {
        const t = theirs[name] as Method;
        expect([m.path, m.requestStream, m.responseStream, m.originalName], name).toEqual([
          t.path,
          t.requestStream,
          t.responseStream,
          t.originalName,
        ]);
      }
    });

    it(`${service}: every request and response decodes an empty message to the same defaults`, () => {
      const ours = criServiceDefinition(service) as Record<string, Method>;
      const theirs = viaLoader[service] as unknown as Record<string, Method>;
      for (const [name, m] of Object.entries(ours)) {
        const t = theirs[name] as Method;
        const empty = Buffer.alloc(0);
        expect(m.requestDeserialize(empty), name).toEqual(t.requestDeserialize(empty));
        expect(m.responseDeserialize(empty), name).toEqual(t.responseDeserialize(empty));
      }
    });
  }

  it('encodes and decodes a full ContainerStatus reply exactly as proto-loader does', () => {
    const reply = {
      status: {
        id: 'c1',
        metadata: { name: 'app', attempt: 2 },
        state: 'CONTAINER_EXITED',
        created_at: '1764633600123456789',
        started_at: '1764633601123456789',
        finished_at: '1764633602123456789',
        exit_code: 137,
        image: { image: 'busybox:1.36', annotations: { a: 'b' } },
        image_ref: 'sha256:abc',
        reason: 'OOMKilled',
        labels: { app: 'web' },
        mounts: [{ container_path: '/data', host_path: '/srv', propagation: 'PROPAGATION_PRIVATE' }],
        resources: { linux: { cpu_shares: '1024', memory_limit_in_bytes: '67108864' } },
      },
      info: { info: '{"pid":1}' },
    };
    const ours = criServiceDefinition(CriService.runtime).ContainerStatus as Method;
    const theirs = (viaLoader[CriService.runtime] as unknown as Record<string, Method>)
      .ContainerStatus as Method;
    const bytes = ours.responseSerialize(reply);
    expect(bytes).toEqual(theirs.responseSerialize(reply));
    expect(ours.responseDeserialize(bytes)).toEqual(theirs.responseDeserialize(bytes));
    expect(ours.responseDeserialize(bytes)).toMatchObject({ status: { exit_code: 137 } });
    expect(() => ours.responseSerialize([] as unknown as object)).toThrow(/array/);
  });
});
