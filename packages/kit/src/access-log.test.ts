import { PassThrough } from 'node:stream';
import { BerthError, Code, defineService, op, Scope, Service } from '@berth/api';
import { startNats, topLevelKeys } from '@berth/testing';
import { diag } from '@opentelemetry/api';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { call } from './client.js';
import { createLogger } from './logger.js';
import { connectNats } from './nats.js';
import { type ServedService, serve } from './service.js';
import { startCliTelemetry } from './tracing/cli-telemetry.js';
import { installDiagLogger, setDiagSink } from './tracing/diag.js';

// The logs a user reads next to the traces: one access line per request at info (operation,
// outcome, duration, trace id), refusals at info too, and never the same key twice in a line.

const EchoApi = defineService({
  name: Service.image,
  scope: Scope.cluster,
  ops: {
    echo: op({
      input: z.object({ text: z.string() }),
      output: z.object({ text: z.string() }),
      timeoutMs: 5_000,
      description: 'the text back; "missing" is NOT_FOUND, "boom" an internal error',
    }),
  },
});

const lines: string[] = [];
const out = new PassThrough();
out.setEncoding('utf8');
let buffered = '';
out.on('data', (chunk: string) => {
  buffered += chunk;
  let nl = buffered.indexOf('\n');
  while (nl >= 0) {
    lines.push(buffered.slice(0, nl));
    buffered = buffered.slice(nl + 1);
    nl = buffered.indexOf('\n');
  }
});

let nats: Awaited<ReturnType<typeof startNats>>;
let nc: NatsConnection;
let served: ServedService;
// Spans with real ids in this process, so log lines carry a trace id to check.
const telemetry = startCliTelemetry({ service: 'kit-test', version: '0', node: 'n' });

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'access-log-test' });
  served = await serve({
    nc,
    service: EchoApi,
    version: '0.0.0',
    node: 'n',
    log: createLogger({ service: 'image-service', node: 'n', level: 'info', destination: out }),
    handlers: {
      echo: async ({ text }) => {
        if (text === 'missing') throw new BerthError(Code.NOT_FOUND, `text "${text}" not found`);
        if (text === 'boom') throw new Error('boom');
        return { text };
      },
    },
  });
});

afterAll(async () => {
  await served?.stop(1000);
  await nc?.close();
  await nats?.stop();
});

describe('access log', () => {
  it('one line per request at info with outcome, duration and trace id; refusals at info; no duplicate keys', async () => {
    const traceIds = await telemetry.run('test', async () => {
      await call(nc, EchoApi, 'echo', { text: 'hi' });
      await expect(call(nc, EchoApi, 'echo', { text: 'missing' })).rejects.toThrow('not found');
      await expect(call(nc, EchoApi, 'echo', { text: 'boom' })).rejects.toThrow();
      return 0;
    });
    expect(traceIds).toBe(0);
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const access = parsed.filter((l) => l.msg === 'request');
    expect(access.map((l) => [l.op, l.outcome])).toEqual([
      ['echo', 'OK'],
      ['echo', 'NOT_FOUND'],
      ['echo', 'INTERNAL'],
    ]);
    for (const a of access) {
      expect(a).toMatchObject({
        level: 30,
        service: 'image-service',
        ns: 'default',
        trace_id: telemetry.traceId(),
      });
      expect(typeof a.ms).toBe('number');
    }
    const refused = parsed.find((l) => l.msg === 'request refused');
    expect(refused).toMatchObject({ level: 30, code: 'NOT_FOUND', reason: 'text "missing" not found' });
    for (const l of lines) {
      const keys = topLevelKeys(l);
      expect(keys, l).toEqual([...new Set(keys)]);
    }
  });
});

describe('telemetry diagnostics', () => {
  it('are logged once per kind, not once per attempt', () => {
    const got: string[] = [];
    installDiagLogger();
    setDiagSink((level, message) => got.push(`${level} ${message}`));
    diag.error('OTLP export failed: connect ECONNREFUSED 127.0.0.1:4318');
    diag.error('OTLP export failed: connect ECONNREFUSED 127.0.0.1:4319');
    diag.warn('Dropped 12 spans because maxQueueSize reached');
    diag.warn('Dropped 40 spans because maxQueueSize reached');
    diag.info('not a problem');
    expect(got).toHaveLength(2);
    expect(got[0]).toMatch(/^error OTLP export failed: connect ECONNREFUSED 127\.0\.0\.1:4318 \(logged once/);
    expect(got[1]).toMatch(/^warn Dropped 12 spans/);
  });
});
