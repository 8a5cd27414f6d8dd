import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseResourceAttributes, resourceAttributes } from './resource.js';
import type { SpanRecord } from './span-record.js';
import { appendSpans, readSpans } from './span-store.js';
import { redactArgs } from './spans.js';
import { formatTraceparent, newSpanId, newTraceId, parseTraceparent } from './traceparent.js';

function span(i: number, extra: Partial<SpanRecord> = {}): SpanRecord {
  return {
    traceId: newTraceId(),
    spanId: newSpanId(),
    parentSpanId: '',
    name: `span ${i}`,
    kind: 0,
    service: 'test',
    instance: 'i-1',
    scope: 'berth',
    startUs: 1_700_000_000_000_000 + i,
    endUs: 1_700_000_000_000_100 + i,
    status: { code: 1 },
    attributes: { 'x.pad': 'p'.repeat(200) },
    events: [],
    links: [],
    ...extra,
  };
}

describe('the span store', () => {
  let dir: string;
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'berth-spans-')), 'traces');
  });
  afterEach(async () => {
    await rm(join(dir, '..'), { recursive: true, force: true });
  });

  it('keeps what was appended, in order, creating its directory owner-only', async () => {
    const a = [span(1), span(2)];
    await appendSpans(dir, a);
    await appendSpans(dir, [span(3)]);
    const got = await readSpans(dir);
    expect(got.map((s) => s.name)).toEqual(['span 1', 'span 2', 'span 3']);
    expect(got[0]).toEqual(a[0]);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, 'spans.jsonl'))).mode & 0o777).toBe(0o600);
  });

  it('stays bounded: full segments rotate and only the newest few are kept', async () => {
    const limits = { segmentBytes: 4096, keepSegments: 2 };
    for (let i = 0; i < 60; i++) await appendSpans(dir, [span(i)], limits);
    const files = await readdir(dir);
    const segments = files.filter((f) => /^spans-\d{13}-\d+\.jsonl$/.test(f));
    expect(segments.length).toBe(2);
    let total = 0;
    for (const f of files) total += (await stat(join(dir, f))).size;
    // Two kept segments and the current file, each at most one line past the segment size.
    expect(total).toBeLessThan(3 * (4096 + 1024));
    const names = (await readSpans(dir)).map((s) => s.name);
    // The newest spans are there, the oldest are gone, and the order holds.
    expect(names[names.length - 1]).toBe('span 59');
    expect(names).not.toContain('span 0');
    const nums = names.map((n) => Number(n.split(' ')[1]));
    expect([...nums].sort((x, y) => x - y)).toEqual(nums);
  });

  it('skips a line a crash cut short, and reads an absent store as empty', async () => {
    expect(await readSpans(dir)).toEqual([]);
    await appendSpans(dir, [span(1)]);
    await writeFile(join(dir, 'spans.jsonl'), '{"traceId":"ab', { flag: 'a' });
    await appendSpans(dir, [span(2)]);
    expect((await readSpans(dir)).map((s) => s.name)).toEqual(['span 1', 'span 2']);
  });
});

describe('W3C traceparent', () => {
  it('round-trips and refuses what the specification says to ignore', () => {
    const sc = { traceId: newTraceId(), spanId: newSpanId(), traceFlags: 1 };
    const tp = formatTraceparent(sc);
    expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(parseTraceparent(tp)).toEqual({ ...sc, isRemote: true });
    const t = '4bf92f3577b34da6a3ce929d0e0e4736';
    const s = '00f067aa0ba902b7';
    expect(parseTraceparent(`00-${t}-${s}-00`)?.traceFlags).toBe(0);
    for (const bad of [
      `00-${'0'.repeat(32)}-${s}-01`,
      `00-${t}-${'0'.repeat(16)}-01`,
      `ff-${t}-${s}-01`,
      `00-${t}-${s}-01-extra`,
      `00-${t.toUpperCase()}-${s}-01`,
      'garbage',
      '',
    ]) {
      expect(parseTraceparent(bad), bad).toBeUndefined();
    }
    // A later version may add fields; its first four are still read.
    expect(parseTraceparent(`01-${t}-${s}-01-more`)?.traceId).toBe(t);
    expect(parseTraceparent(`00-${t}-${s}-01`, 'vendor=x')?.traceState?.get('vendor')).toBe('x');
  });
});

describe('redactArgs', () => {
  it('hides secret flag values, secret assignments and URL credentials, nothing else', () => {
    expect(
      redactArgs([
        '--root',
        '/var/lib/berth/runc/default',
        'start',
        '--password',
        'hunter2',
        '--token=abc',
        'DB_PASSWORD=s3cret',
        'PATH=/bin',
        'https://user:pw@registry.example/v2/',
        'id-1',
      ]),
    ).toEqual([
      '--root',
      '/var/lib/berth/runc/default',
      'start',
      '--password',
      '[REDACTED]',
      '--token=[REDACTED]',
      'DB_PASSWORD=[REDACTED]',
      'PATH=/bin',
      'https://***@registry.example/v2/',
      'id-1',
    ]);
  });
});

describe('resource attributes', () => {
  it('honour OTEL_RESOURCE_ATTRIBUTES and then OTEL_SERVICE_NAME over berth defaults', () => {
    const base = { service: 'shim', version: '1.0.0', node: 'n1', instance: 'abc' };
    const plain = resourceAttributes(base, {});
    expect(plain).toMatchObject({ 'service.name': 'shim', 'service.instance.id': 'abc', 'berth.node': 'n1' });
    expect(typeof plain['host.name']).toBe('string');
    const env = {
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=lab,service.name=from-attrs,team=a%20b,broken',
      OTEL_SERVICE_NAME: 'custom',
    };
    expect(resourceAttributes(base, env)).toMatchObject({
      'service.name': 'custom',
      'deployment.environment': 'lab',
      team: 'a b',
    });
    expect(parseResourceAttributes('a=%zz,b=1')).toEqual({ b: '1' });
  });
});
