import { Writable } from 'node:stream';
import { defineService, op, Scope, Service } from '@berth/api';
import { startNats } from '@berth/testing';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { call } from './client.js';
import { createLogger } from './logger.js';
import { connectNats } from './nats.js';
import { type ServedService, serve } from './service.js';

// A request's answer is written to the socket before the callee's bookkeeping (the span's end and
// the synchronous access-log write), which would otherwise hold it for as long as they run.

const EchoApi = defineService({
  name: Service.image,
  scope: Scope.cluster,
  ops: {
    echo: op({
      input: z.object({ text: z.string() }),
      output: z.object({ text: z.string() }),
      timeoutMs: 5_000,
      description: 'the text back',
    }),
  },
});

// What happened in the serving process, in order: octets handed to its NATS socket that carry the
// answer, and lines written to its log.
const seen: string[] = [];

let nats: Awaited<ReturnType<typeof startNats>>;
let server: NatsConnection;
let client: NatsConnection;
let served: ServedService;

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  server = await connectNats({ url: nats.url, name: 'reply-first-server' });
  client = await connectNats({ url: nats.url, name: 'reply-first-client' });
  // nats.js's own transport: every write of the connection goes through its send().
  const transport = (server as unknown as { protocol: { transport: { send(b: Uint8Array): void } } }).protocol
    .transport;
  const send = transport.send.bind(transport);
  transport.send = (b: Uint8Array) => {
    if (Buffer.from(b).includes('answer-of-')) seen.push('answer sent');
    send(b);
  };
  const log = new Writable({
    write(chunk: Buffer, _enc, done) {
      const line = JSON.parse(chunk.toString('utf8')) as { msg?: string };
      if (line.msg === 'request') seen.push('access line');
      done();
    },
  });
  served = await serve({
    nc: server,
    service: EchoApi,
    version: '0.0.0',
    node: 'n',
    log: createLogger({ service: 'image-service', node: 'n', level: 'info', destination: log }),
    handlers: { echo: async ({ text }) => ({ text: `answer-of-${text}` }) },
  });
});

afterAll(async () => {
  await served?.stop(1000);
  await client?.close();
  await server?.close();
  await nats?.stop();
});

describe('a served request', () => {
  it('has its answer written before its access line', async () => {
    for (const text of ['a', 'b', 'c']) {
      seen.length = 0;
      await expect(call(client, EchoApi, 'echo', { text })).resolves.toEqual({ text: `answer-of-${text}` });
      await expect.poll(() => seen.length).toBe(2);
      expect(seen).toEqual(['answer sent', 'access line']);
    }
  });
});
