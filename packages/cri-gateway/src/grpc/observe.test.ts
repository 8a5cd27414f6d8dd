import { BerthError, Code } from '@berth/api';
import { createLogger, startTelemetry } from '@berth/kit';
import { context, SpanKind, SpanStatusCode, type TextMapGetter, trace } from '@opentelemetry/api';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import type { HandlerDeps } from '../handlers/index.js';
import { observeCall, UNTRACED_POLL_MS } from './observe.js';

// A CRI call's server span is started on first use (lazy-span.ts): a read that makes no child
// span starts it when the call ends, after its reply; one whose handler calls further starts it
// when the child needs its parent. Either way the trace is the one an eager span made: the
// caller's trace, the call's arrival as start time, attributes, status, and children under it.

type Processor = NonNullable<Parameters<typeof startTelemetry>[0]['extraProcessors']>[number];
type Ended = Parameters<Processor['onEnd']>[0];

const started: string[] = [];
const ended: Ended[] = [];
const recorder: Processor = {
  onStart: (span) => void started.push(span.name),
  onEnd: (span) => void ended.push(span),
  forceFlush: async () => undefined,
  shutdown: async () => undefined,
};
const telemetry = startTelemetry({
  service: 'cri-gateway',
  version: '0.0.0',
  node: 'test',
  extraProcessors: [recorder],
});
const deps = {
  log: createLogger({ service: 'cri-gateway', node: 'test', level: 'silent' }),
} as unknown as HandlerDeps;

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER = 'b7ad6b7169203331';
const headers: Record<string, string> = { traceparent: `00-${TRACE}-${CALLER}-01` };
const getter: TextMapGetter<Record<string, string>> = {
  get: (c, k) => c[k],
  keys: (c) => Object.keys(c),
};

const hrMs = ([s, ns]: [number, number]) => s * 1000 + ns / 1e6;

beforeEach(() => {
  started.length = 0;
  ended.length = 0;
});

afterAll(async () => {
  await telemetry.shutdown();
});

describe('a CRI call span started on first use', () => {
  it('a call that makes no child span starts its span when it ends, timed from its arrival', () => {
    const before = performance.timeOrigin + performance.now();
    const obs = observeCall({
      rpc: 'RuntimeService/ContainerStatus',
      request: { container_id: 'c1' },
      carrier: headers,
      getter,
      deps,
    });
    const arrived = performance.timeOrigin + performance.now();
    // The handler ran and answered from memory: nothing was started for it.
    expect(started).toEqual([]);
    expect(obs.end()).toBeUndefined();
    expect(started).toEqual(['cri/RuntimeService/ContainerStatus']);
    const [span] = ended;
    expect(span?.kind).toBe(SpanKind.SERVER);
    expect(span?.status.code).toBe(SpanStatusCode.OK);
    expect(span?.spanContext().traceId).toBe(TRACE);
    expect(span?.parentSpanContext?.spanId).toBe(CALLER);
    expect(span?.attributes).toMatchObject({
      'rpc.system': 'grpc',
      'rpc.service': 'runtime.v1.RuntimeService',
      'rpc.method': 'RuntimeService/ContainerStatus',
      'berth.container.id': 'c1',
    });
    // Its start is the call's arrival, not the end that made it.
    const start = hrMs(span?.startTime as [number, number]);
    expect(start).toBeGreaterThanOrEqual(before - 1);
    expect(start).toBeLessThanOrEqual(arrived + 1);
    expect(hrMs(span?.endTime as [number, number])).toBeGreaterThanOrEqual(start);
    // Only the first end counts.
    expect(obs.end(new Error('late'))).toBeUndefined();
    expect(ended).toHaveLength(1);
  });

  it("a handler's child span starts the call's span first and is its child", () => {
    const obs = observeCall({
      rpc: 'RuntimeService/StartContainer',
      request: { container_id: 'c2' },
      carrier: headers,
      getter,
      deps,
    });
    context.with(obs.context, () => {
      const child = trace.getTracer('test').startSpan('task.start');
      child.end();
    });
    expect(started).toEqual(['cri/RuntimeService/StartContainer', 'task.start']);
    obs.end();
    const child = ended.find((s) => s.name === 'task.start');
    const server = ended.find((s) => s.name === 'cri/RuntimeService/StartContainer');
    expect(child?.parentSpanContext?.spanId).toBe(server?.spanContext().spanId);
    expect(child?.spanContext().traceId).toBe(TRACE);
  });

  it('a failed call ends its span with the error code and the exception', () => {
    const obs = observeCall({
      rpc: 'ImageService/ImageStatus',
      request: {},
      carrier: {},
      getter,
      deps,
    });
    const err = obs.end(new BerthError(Code.NOT_FOUND, 'image "x" not found'));
    expect(err?.code).toBe(Code.NOT_FOUND);
    const [span] = ended;
    expect(span?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'image "x" not found' });
    expect(span?.attributes['berth.error_code']).toBe(Code.NOT_FOUND);
    expect(span?.events.map((e) => e.name)).toEqual(['exception']);
    // No caller's context: a root span of a trace of its own.
    expect(span?.parentSpanContext).toBeUndefined();
    expect(span?.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe("a polled read's span", () => {
  const quietRead = (carrier: Record<string, string>, log = deps) =>
    observeCall({
      rpc: 'RuntimeService/ContainerStatus',
      request: { container_id: 'c3' },
      carrier,
      getter,
      deps: log,
    });

  it('is not recorded when it succeeds at once outside a sampled trace of its caller', () => {
    expect(quietRead({}).end()).toBeUndefined();
    expect(quietRead({ traceparent: `00-${TRACE}-${CALLER}-00` }).end()).toBeUndefined();
    expect(started).toEqual([]);
    expect(ended).toEqual([]);
  });

  it('is recorded in a sampled trace of its caller, when it fails, and with debug logging on', () => {
    quietRead(headers).end();
    quietRead({}).end(new BerthError(Code.NOT_FOUND, 'container "c3" not found'));
    const debug = {
      log: createLogger({
        service: 'cri-gateway',
        node: 'test',
        level: 'debug',
        destination: { write: () => undefined },
      }),
    } as unknown as HandlerDeps;
    quietRead({}, debug).end();
    expect(ended.map((s) => s.status.code)).toEqual([
      SpanStatusCode.OK,
      SpanStatusCode.ERROR,
      SpanStatusCode.OK,
    ]);
    expect(ended[0]?.spanContext().traceId).toBe(TRACE);
  });

  it('is recorded when the read is slow, and a write is recorded whatever its caller', () => {
    const slow = quietRead({});
    const until = performance.now() + UNTRACED_POLL_MS + 5;
    while (performance.now() < until) {
      // The read's handler takes longer than UNTRACED_POLL_MS.
    }
    slow.end();
    observeCall({ rpc: 'RuntimeService/StopContainer', request: {}, carrier: {}, getter, deps }).end();
    expect(ended.map((s) => s.name)).toEqual([
      'cri/RuntimeService/ContainerStatus',
      'cri/RuntimeService/StopContainer',
    ]);
  });
});
