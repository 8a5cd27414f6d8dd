import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ProcessBackend } from '../testdata/process-backend.js';
import { createStreamingServer, type StreamingServer } from './index.js';

// The server against a WebSocket client written by others (the ws package, which checks masks,
// reserved bits, close codes and UTF-8 strictly), so the framing is not only checked against
// the test client written alongside it. SPDY interoperability was checked by hand against
// client-go's SPDY executor and port-forwarder (see README), which cannot run in this suite.

let server: StreamingServer;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  server = await createStreamingServer({ backend: new ProcessBackend() });
  echo = createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as { port: number }).port;
});

afterAll(async () => {
  await server?.close();
  echo?.close();
});

/** Collects binary messages until the server closes; resolves with them and the close code. */
function collect(ws: WebSocket): Promise<{ messages: Buffer[]; code: number }> {
  const messages: Buffer[] = [];
  ws.on('message', (data: Buffer) => messages.push(data));
  return new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.once('close', (code) => resolve({ messages, code }));
  });
}

const onChannel = (messages: Buffer[], n: number) =>
  Buffer.concat(messages.filter((m) => m[0] === n).map((m) => m.subarray(1))).toString();

describe('WebSocket interoperability (ws package)', () => {
  it('runs an exec with stdin, the v5 CLOSE signal, a ping, and a status', async () => {
    const url = server.url('exec', {
      containerId: 'c1',
      cmd: ['sh', '-c', 'tr a-z A-Z; exit 5'],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: true,
    });
    const ws = new WebSocket(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
    const done = collect(ws);
    await once(ws, 'open');
    expect(ws.protocol).toBe('v5.channel.k8s.io');
    ws.ping(Buffer.from('hb'));
    const [pong] = await once(ws, 'pong');
    expect(pong.toString()).toBe('hb');
    ws.send(Buffer.from('\x00shout\n'));
    ws.send(Buffer.from([255, 0]));
    const { messages, code } = await done;
    expect(code).toBe(1000);
    expect(onChannel(messages, 1)).toBe('SHOUT\n');
    const status = JSON.parse(onChannel(messages, 3));
    expect(status.details.causes).toEqual([{ reason: 'ExitCode', message: '5' }]);
  });

  it('forwards a port', async () => {
    const ws = new WebSocket(server.url('portforward', { podSandboxId: 'p1', ports: [echoPort] }), [
      'v4.channel.k8s.io',
    ]);
    const received: Buffer[] = [];
    ws.on('message', (data: Buffer) => received.push(data));
    await once(ws, 'open');
    ws.send(Buffer.from('\x00over ws'));
    await new Promise<void>((resolve) => {
      const check = () =>
        onChannel(received.slice(1), 0) === 'over ws' ? resolve() : ws.once('message', check);
      check();
    });
    ws.close();
    await once(ws, 'close');
  });

  it('gets a clear refusal for a subprotocol it does not speak', async () => {
    const ws = new WebSocket(server.url('portforward', { podSandboxId: 'p1', ports: [echoPort] }), [
      'v5.channel.k8s.io',
    ]);
    ws.on('error', () => undefined);
    const [, res] = await once(ws, 'unexpected-response');
    expect(res.statusCode).toBe(403);
  });
});
