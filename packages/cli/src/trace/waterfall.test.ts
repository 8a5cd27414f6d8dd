import type { SpanRecord } from '@berth/kit/tracing';
import { describe, expect, it } from 'vitest';
import { groupTraces, selectTrace } from './select.js';
import { renderTraceList, renderWaterfall, shortDuration, treeOrder } from './waterfall.js';

const T0 = 1_764_000_000_000_000;
let n = 0;
function span(p: Partial<SpanRecord> & { name: string; traceId: string }): SpanRecord {
  n++;
  return {
    spanId: n.toString(16).padStart(16, '0'),
    parentSpanId: '',
    kind: 0,
    service: 'berth',
    instance: 'i',
    scope: 'berth',
    startUs: T0,
    endUs: T0 + 1000,
    status: { code: 1 },
    attributes: {},
    events: [],
    links: [],
    ...p,
  };
}

const A = 'a'.repeat(32);
const B = 'b'.repeat(31) + '1';
const root = span({ traceId: A, name: 'berth run', startUs: T0, endUs: T0 + 100_000 });
const call = span({
  traceId: A,
  name: 'task-service/start',
  kind: 2,
  parentSpanId: root.spanId,
  startUs: T0 + 10_000,
  endUs: T0 + 60_000,
});
const server = span({
  traceId: A,
  name: 'shim/start',
  kind: 1,
  service: 'shim',
  parentSpanId: call.spanId,
  startUs: T0 + 12_000,
  endUs: T0 + 58_000,
});
const runc = span({
  traceId: A,
  name: 'runc start',
  service: 'shim',
  parentSpanId: server.spanId,
  startUs: T0 + 20_000,
  endUs: T0 + 50_000,
  attributes: { 'process.exit.code': 1, 'berth.error_code': 'FAILED_PRECONDITION' },
  status: { code: 2, message: 'runc start failed: boom' },
});
const orphan = span({
  traceId: A,
  name: 'late',
  service: 'task-service',
  parentSpanId: 'ffffffffffffffff',
  startUs: T0 + 1,
});
const older = span({ traceId: B, name: 'berth pull', startUs: T0 - 5_000_000, endUs: T0 - 4_000_000 });
const traceCmd = span({
  traceId: 'c'.repeat(32),
  name: 'berth trace',
  startUs: T0 + 1_000_000,
  endUs: T0 + 1_001_000,
});

describe('berth trace', () => {
  const traces = groupTraces([older, runc, server, call, root, orphan, traceCmd, root]);

  it('groups spans by trace, newest first, without duplicates', () => {
    expect(traces.map((t) => t.traceId)).toEqual(['c'.repeat(32), A, B]);
    expect(traces[1]?.spans).toHaveLength(5);
    expect(traces[1]?.root?.name).toBe('berth run');
  });

  it('selects by id prefix, the last command (never berth trace itself) and by operation', () => {
    expect(selectTrace(traces, { id: 'aaaa' }).traceId).toBe(A);
    expect(selectTrace(traces, { last: true }).traceId).toBe(A);
    expect(selectTrace(traces, { op: 'pull' }).traceId).toBe(B);
    expect(selectTrace(traces, { op: 'berth run' }).traceId).toBe(A);
    expect(() => selectTrace(traces, { id: 'abc' })).toThrow(/4 to 32 hexadecimal/);
    expect(() => selectTrace(traces, { id: 'dddd' })).toThrow(/not found/);
    expect(() => selectTrace(traces, { op: 'exec' })).toThrow(/no trace of operation "exec"/);
  });

  it('orders the tree depth-first by start, orphans last', () => {
    const order = treeOrder(traces[1]?.spans ?? []).map(
      (r) => `${r.depth}:${r.span.name}${r.orphan ? '?' : ''}`,
    );
    expect(order).toEqual(['0:berth run', '1:task-service/start', '2:shim/start', '3:runc start', '0:late?']);
  });

  it('draws the waterfall: offsets, durations, status, bars on the time line, errors once', () => {
    const t = traces[1];
    if (!t) throw new Error('no trace');
    const text = renderWaterfall(t, { barWidth: 20, nameWidth: 52 });
    const lines = text.split('\n');
    expect(lines[0]).toBe(`trace ${A}  berth run  100.0ms  5 spans, 3 services, 1 failed`);
    const runcLine = lines.find((l) => l.includes('runc start')) ?? '';
    expect(runcLine).toMatch(
      /^shim\s+ {6}runc start \[exit=1 FAILED_PRECONDITION\]\s+20\.0ms\s+30\.0ms\s+ERROR\s+\|/,
    );
    // 20..50 ms of 100 ms on a 20-wide bar: columns 4..9.
    expect(runcLine.endsWith(`|    ${'▒'.repeat(6)}${' '.repeat(10)}|`)).toBe(true);
    const rootLine = lines.find((l) => /^berth\s+berth run/.test(l)) ?? '';
    expect(rootLine.endsWith(`|${'█'.repeat(20)}|`)).toBe(true);
    expect(text).toContain('shim/start (server)');
    expect(text).toContain('task-service/start (client)');
    expect(text).toContain('shim runc start: runc start failed: boom');
    expect(text).toContain('1 span(s) whose parent is not in the store');
  });

  it('lists recent traces and formats durations', () => {
    const list = renderTraceList(traces);
    expect(list.split('\n')[1]).toMatch(
      new RegExp(`^${'c'.repeat(32)}  \\S+ \\S+\\s+1\\.00ms\\s+1  OK\\s+berth trace$`),
    );
    expect(list).toMatch(new RegExp(`${A}.*5  ERROR  berth run`));
    expect([shortDuration(830), shortDuration(12_400), shortDuration(1_520_000)]).toEqual([
      '830µs',
      '12.4ms',
      '1.52s',
    ]);
  });
});
