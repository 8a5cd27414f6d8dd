import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  OtlpKind,
  type OtlpReceiver,
  OtlpStatus,
  type ReceivedSpan,
  startOtlpReceiver,
} from '../harness/otlp.js';
import { type Stack, startStack } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// The observability promise: with OTEL_EXPORTER_OTLP_ENDPOINT set, every service exports spans over
// OTLP/HTTP, trace context crosses NATS in W3C traceparent headers so a request that spans
// services is one trace, refusals carry their berth error code, and log lines written while
// serving a request carry its trace and span ids.
let f: UpFixture;
let stack: Stack;
let otlp: OtlpReceiver;
let image: string;

beforeAll(async () => {
  otlp = await startOtlpReceiver();
  f = await startUpFixture({ nodes: [{ env: otlp.env() }] });
  [stack] = f.stacks as [Stack];
  image = f.image;
}, 120_000);

afterAll(async () => {
  await f?.stop();
  await otlp?.stop();
}, 60_000);

/** The parent of a span, once it arrived (spans of one trace reach the receiver in any order). */
const parentOf = (s: ReceivedSpan) => {
  expect(s.parentSpanId, `parent of ${describeSpan(s)}`).not.toBe('');
  return otlp.waitForSpan((p) => p.spanId === s.parentSpanId);
};

function describeSpan(s: ReceivedSpan | undefined): string {
  return s ? `${s.service} ${s.name} kind=${s.kind} trace=${s.traceId} parent=${s.parentSpanId}` : 'none';
}

describe('tracing across services', () => {
  it('a pull is one trace: image-service pull -> snapshot-service unpack', async () => {
    const pull = await stack.berth('pull', image);
    expect(pull.code, pull.stderr).toBe(0);

    const unpackServer = await otlp.waitForSpan(
      (s) =>
        s.service === 'snapshot-service' &&
        s.name === 'snapshot-service/unpack' &&
        s.kind === OtlpKind.server,
    );
    // Its parent is the image-service's client span for the same call...
    const unpackClient = await otlp.waitForSpan((s) => s.spanId === unpackServer.parentSpanId);
    expect(unpackClient).toMatchObject({
      service: 'image-service',
      name: 'snapshot-service/unpack',
      kind: OtlpKind.client,
      traceId: unpackServer.traceId,
      status: { code: OtlpStatus.ok },
    });
    // ...which is a child of the image-service's server span for the pull: one trace.
    const pullServer = await otlp.waitForSpan((s) => s.spanId === unpackClient.parentSpanId);
    expect(pullServer).toMatchObject({
      service: 'image-service',
      name: 'image-service/pull',
      kind: OtlpKind.server,
      traceId: unpackServer.traceId,
      status: { code: OtlpStatus.ok },
      attributes: { 'rpc.method': 'pull' },
    });
    // ...called by the CLI, whose span for the command is the root of the trace.
    const cliCall = await parentOf(pullServer);
    expect(cliCall).toMatchObject({ service: 'berth', name: 'image-service/pull', kind: OtlpKind.client });
    const root = await parentOf(cliCall);
    expect(root).toMatchObject({
      service: 'berth',
      name: 'berth pull',
      parentSpanId: '',
      traceId: unpackServer.traceId,
      status: { code: OtlpStatus.ok },
    });
    expect(unpackServer.status.code).toBe(OtlpStatus.ok);
    expect(unpackServer.resource['berth.node']).toBe(stack.nodeId);
    expect(otlp.errors()).toEqual([]);

    // Log correlation: the snapshot-service logged the unpacked layer inside the traced request.
    const snapLog = stack.state()?.children.find((c) => c.name === 'snapshot-service')?.logFile;
    expect(snapLog).toBeDefined();
    const lines = readFileSync(snapLog as string, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; trace_id?: string; span_id?: string });
    const unpacked = lines.filter((l) => l.msg === 'layer unpacked' && l.trace_id === unpackServer.traceId);
    expect(unpacked.length, `log lines:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`).toBeGreaterThan(
      0,
    );
    // The line was written inside the unpack request, under its span (or a child of it).
    const spanIds = new Set(
      otlp
        .spans()
        .filter((s) => s.traceId === unpackServer.traceId && s.service === 'snapshot-service')
        .map((s) => s.spanId),
    );
    expect(spanIds.has(unpacked[0]?.span_id ?? '')).toBe(true);
  });

  it('a refused pull is an error span carrying the berth error code', async () => {
    const missing = `${f.registry.host}/busybox:no-such-tag`;
    const pull = await stack.berth('pull', missing);
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toContain('no-such-tag');

    const span = await otlp.waitForSpan(
      (s) =>
        s.service === 'image-service' &&
        s.name === 'image-service/pull' &&
        s.kind === OtlpKind.server &&
        s.status.code === OtlpStatus.error,
    );
    expect(span.attributes['berth.error_code']).toBe('NOT_FOUND');
    expect(span.status.message).toContain('no-such-tag');
    // The CLI's command span fails with the same code.
    const root = await parentOf(await parentOf(span));
    expect(root).toMatchObject({
      service: 'berth',
      name: 'berth pull',
      traceId: span.traceId,
      status: { code: OtlpStatus.error },
      attributes: { 'berth.error_code': 'NOT_FOUND' },
    });
  });

  it('a container run is traced from task-service into the shim', async () => {
    const run = await stack.berth('run', '--rm', image, 'true');
    expect(run.code, run.stderr).toBe(0);

    // The shim's server span for `create` (which starts the task too: no session to attach) is a
    // child of the task-service's client span for it, made while serving the CLI's request.
    const start = await otlp.waitForSpan((s) => s.service === 'shim' && s.name === 'runc start (exec fifo)');
    const shimServer = await parentOf(start);
    expect(shimServer, describeSpan(shimServer)).toMatchObject({
      service: 'shim',
      kind: OtlpKind.server,
      name: 'shim/create',
      traceId: start.traceId,
    });
    const client = await parentOf(shimServer);
    expect(client, describeSpan(client)).toMatchObject({
      service: 'task-service',
      kind: OtlpKind.client,
      name: 'shim/create',
      traceId: shimServer.traceId,
    });
    const taskServer = await parentOf(client);
    expect(taskServer).toMatchObject({
      service: 'task-service',
      kind: OtlpKind.server,
      traceId: shimServer.traceId,
    });
    // `berth run` is one trace: every task-service request it made hangs off the command's span.
    const root = await parentOf(await parentOf(taskServer));
    expect(root).toMatchObject({ service: 'berth', name: 'berth run', parentSpanId: '' });
    const calls = otlp
      .spans()
      .filter((s) => s.service === 'berth' && s.kind === OtlpKind.client && s.parentSpanId === root.spanId);
    expect(calls.length).toBeGreaterThan(1);
    for (const c of calls) expect(c.traceId).toBe(root.traceId);
  });
});

describe('export on shutdown', () => {
  it('spans still in the batch are flushed when the services stop', async () => {
    // A delay far beyond the test: nothing is exported on the timer, only by the flush on SIGTERM.
    const late = await startOtlpReceiver();
    const quiet = await startStack({ env: late.env(600_000) });
    try {
      const images = await quiet.berth('images');
      expect(images.code, images.stderr).toBe(0);
      // The CLI flushes before it exits.
      const root = await late.waitForSpan((s) => s.service === 'berth' && s.name === 'berth images');
      expect(late.spans().some((s) => s.service === 'image-service')).toBe(false);
      const down = await quiet.berth('down');
      expect(down.code, down.stderr).toBe(0);
      // The command's own list (the CRI gateway lists images too, in traces of its own).
      const list = await late.waitForSpan(
        (s) =>
          s.service === 'image-service' &&
          s.kind === OtlpKind.server &&
          s.name === 'image-service/list' &&
          s.traceId === root.traceId,
      );
      expect(list.parentSpanId).toBeTruthy();
    } finally {
      await quiet.stop();
      await late.stop();
    }
  });
});
