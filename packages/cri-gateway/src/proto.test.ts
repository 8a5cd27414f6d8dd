import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Code, grpcStatusOf } from '@berth/api';
import { status as grpcStatus } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { beforeAll, describe, expect, it } from 'vitest';
import { CRI_LOADER_OPTIONS, CRI_PROTO_PATH, CriService, criServiceDefinition } from './proto.js';

// berth's proto must be wire-identical to the upstream CRI v1 proto kept in the shared reference.
// BERTH_CRI_REFERENCE_PROTO overrides where it is looked for.
const REFERENCE =
  process.env.BERTH_CRI_REFERENCE_PROTO ??
  resolve(import.meta.dirname, '../../../../shared/reference/cri-api/api.proto');

type Descriptor = {
  name: string;
  field?: FieldDescriptor[];
  nestedType?: Descriptor[];
  enumType?: { name: string; value: { name: string; number: number }[] }[];
  value?: { name: string; number: number }[];
  options?: unknown;
};
type FieldDescriptor = {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
  proto3Optional: boolean;
  oneofIndex: number;
};

const fieldFacts = (f: FieldDescriptor) =>
  `${f.label} ${f.type}${f.typeName ? ` ${f.typeName}` : ''} ${f.name} = ${f.number}${f.proto3Optional ? ' (optional)' : ''}`;

/** Every difference between two loaded protos, as readable lines; empty when wire-identical. */
function protoDifferences(ours: PackageDefinition, ref: PackageDefinition): string[] {
  const out: string[] = [];
  const names = new Set([...Object.keys(ours), ...Object.keys(ref)]);
  for (const name of [...names].sort()) {
    const a = ours[name];
    const b = ref[name];
    if (!a || !b) {
      out.push(`${name}: only in ${a ? 'berth' : 'the reference'}`);
      continue;
    }
    const aIsType = 'format' in a;
    if (aIsType !== 'format' in b) {
      out.push(`${name}: a service in one, a type in the other`);
      continue;
    }
    if (!aIsType) {
      const ma = a as Record<
        string,
        {
          path: string;
          requestStream: boolean;
          responseStream: boolean;
          requestType: { type: Descriptor };
          responseType: { type: Descriptor };
        }
      >;
      const mb = b as typeof ma;
      const methods = new Set([...Object.keys(ma), ...Object.keys(mb)]);
      for (const m of methods) {
        const x = ma[m];
        const y = mb[m];
        if (!x || !y) {
          out.push(`${name}.${m}: only in ${x ? 'berth' : 'the reference'}`);
          continue;
        }
        const facts = (d: typeof x) =>
          `${d.path} (${d.requestStream ? 'stream ' : ''}${d.requestType.type.name}) returns (${d.responseStream ? 'stream ' : ''}${d.responseType.type.name})`;
        if (facts(x) !== facts(y)) out.push(`${name}.${m}: ${facts(x)} != ${facts(y)}`);
      }
      continue;
    }
    const ta = a as { format: string; type: Descriptor };
    const tb = b as { format: string; type: Descriptor };
    if (ta.format !== tb.format) out.push(`${name}: ${ta.format} != ${tb.format}`);
    compareDescriptor(name, ta.type, tb.type, out);
  }
  return out;
}

function compareDescriptor(where: string, a: Descriptor, b: Descriptor, out: string[]): void {
  const fa = (a.field ?? []).map(fieldFacts);
  const fb = (b.field ?? []).map(fieldFacts);
  for (const f of fa)
    if (!fb.includes(f)) out.push(`${where}: berth has field "${f}"; the reference does not`);
  for (const f of fb)
    if (!fa.includes(f)) out.push(`${where}: the reference has field "${f}"; berth does not`);
  const va = (a.value ?? []).map((v) => `${v.name} = ${v.number}`);
  const vb = (b.value ?? []).map((v) => `${v.name} = ${v.number}`);
  if (va.join() !== vb.join()) out.push(`${where}: enum values ${va.join(', ')} != ${vb.join(', ')}`);
  const nested = (d: Descriptor) => [...(d.nestedType ?? []), ...(d.enumType ?? [])] as Descriptor[];
  const na = new Map(nested(a).map((d) => [d.name, d]));
  const nb = new Map(nested(b).map((d) => [d.name, d]));
  for (const [n, d] of na) {
    const other = nb.get(n);
    if (other) compareDescriptor(`${where}.${n}`, d, other, out);
    else out.push(`${where}.${n}: only in berth`);
  }
  for (const n of nb.keys()) if (!na.has(n)) out.push(`${where}.${n}: only in the reference`);
  // Options (deprecated, debug_redact, map_entry, ...) do not change the wire but keep them honest.
  if (JSON.stringify(a.options) !== JSON.stringify(b.options)) out.push(`${where}: options differ`);
}

// The reference is a development aid, absent from a user's clone: describe.skipIf still runs the
// describe body at collection time, so nothing may read the reference outside a test.
describe.skipIf(!existsSync(REFERENCE))(`CRI proto against ${REFERENCE}`, () => {
  let ours: PackageDefinition;
  let ref: PackageDefinition;
  beforeAll(() => {
    ours = loadSync(CRI_PROTO_PATH, CRI_LOADER_OPTIONS);
    ref = loadSync(REFERENCE, CRI_LOADER_OPTIONS);
  });

  it('is wire-identical: services, methods, streaming flags, messages, fields, enums', () => {
    expect(protoDifferences(ours, ref)).toEqual([]);
    // Full descriptors, options included, match too.
    for (const name of Object.keys(ref)) {
      const r = ref[name];
      if (r && 'format' in r) expect((ours[name] as typeof r).type, name).toEqual(r.type);
    }
  });

  it('has the CRI v1 surface the notes describe (35 runtime RPCs, 6 image RPCs, 180 types)', () => {
    expect(Object.keys(criServiceDefinition(CriService.runtime))).toHaveLength(35);
    expect(Object.keys(criServiceDefinition(CriService.image))).toHaveLength(6);
    expect(Object.keys(ours).filter((k) => !k.endsWith('Service'))).toHaveLength(180);
  });

  it('(control) the comparison catches a changed field number, type, label and streaming flag', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-cri-proto-'));
    try {
      const text = await readFile(CRI_PROTO_PATH, 'utf8');
      const broken = text
        .replace('string runtime_api_version = 4;', 'string runtime_api_version = 5;')
        .replace('  int64 timeout = 2;', '  int32 timeout = 2;')
        .replace('repeated string args = 4;', 'string args = 4;')
        .replace('returns (stream StreamImagesResponse)', 'returns (StreamImagesResponse)');
      expect(broken).not.toBe(text);
      await writeFile(join(dir, 'api.proto'), broken);
      const diffs = protoDifferences(loadSync(join(dir, 'api.proto'), CRI_LOADER_OPTIONS), ref);
      expect(diffs.some((d) => d.includes('runtime_api_version = 5'))).toBe(true);
      expect(diffs.some((d) => d.includes('TYPE_INT32') && d.includes('timeout'))).toBe(true);
      expect(diffs.some((d) => d.includes('LABEL_OPTIONAL TYPE_STRING args = 4'))).toBe(true);
      expect(diffs.some((d) => d.startsWith('runtime.v1.ImageService.StreamImages:'))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('gRPC status table', () => {
  it('uses grpc-js status numbers for every berth code', () => {
    for (const c of Object.values(Code)) expect(grpcStatusOf[c], c).toBe(grpcStatus[c]);
  });
});
