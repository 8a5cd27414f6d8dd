import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessBackend } from '../testdata/process-backend.js';
import { type WsMessage, WsTestClient } from '../testdata/ws-client.js';
import { createStreamingServer, type StreamingServer } from './index.js';

// The streaming server driven over WebSocket with the channel.k8s.io subprotocols that newer
// kubectl and crictl use, against a backend running real processes and a real TCP echo server.

let backend: ProcessBackend;
let server: StreamingServer;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  backend = new ProcessBackend();
  server = await createStreamingServer({ backend });
  echo = createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as { port: number }).port;
});

afterAll(async () => {
  await server?.close();
  echo?.close();
});

const base = { containerId: 'c1', stdin: false, stdout: true, stderr: true, tty: false };

/** Concatenates what arrived on one channel (binary protocols). */
function channel(messages: WsMessage[], n: number): string {
  return Buffer.concat(messages.filter((m) => m.data[0] === n).map((m) => m.data.subarray(1))).toString();
}

/** The JSON status on the error channel, once the server has closed. */
async function statusOf(client: WsTestClient): Promise<{ status: string; details?: { causes: unknown[] } }> {
  await client.closed;
  return JSON.parse(channel(client.messages, 3));
}

describe('exec over WebSocket', () => {
  it('v5: stdin ends with the CLOSE signal; stdout, stderr and Success arrive on their channels', async () => {
    const url = server.url('exec', { ...base, stdin: true, cmd: ['sh', '-c', 'cat; echo done >&2'] });
    const client = await WsTestClient.connect(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
    expect(client.response.status).toBe(101);
    expect(client.response.headers['sec-websocket-protocol']).toBe('v5.channel.k8s.io');
    client.send(Buffer.from('\x00hello '));
    client.send(Buffer.from('\x00world\n'));
    client.send(Buffer.from([255, 0]));
    expect((await statusOf(client)).status).toBe('Success');
    expect(channel(client.messages, 1)).toBe('hello world\n');
    expect(channel(client.messages, 2)).toBe('done\n');
    expect(client.closeCode).toBe(1000);
    // kubelet's "ready" signal: an empty message on the lowest requested output channel, first.
    expect(client.messages[0]?.data).toEqual(Buffer.from([1]));
  });

  it('v4: a non-zero exit is NonZeroExitCode with the code', async () => {
    const client = await WsTestClient.connect(server.url('exec', { ...base, cmd: ['sh', '-c', 'exit 42'] }), [
      'v4.channel.k8s.io',
    ]);
    const status = await statusOf(client);
    expect(status).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode' });
    expect(status.details?.causes).toEqual([{ reason: 'ExitCode', message: '42' }]);
  });

  it('reassembles fragmented messages and answers pings', async () => {
    const url = server.url('exec', { ...base, stdin: true, stderr: false, cmd: ['cat'] });
    const client = await WsTestClient.connect(url, ['v5.channel.k8s.io']);
    client.sendFrame(2, Buffer.from('\x00frag'), false);
    client.sendFrame(9, Buffer.from('p1'));
    client.sendFrame(0, Buffer.from('mented\n'), true);
    await client.waitFor((m) => m.data.toString() === 'pong:p1');
    client.send(Buffer.from([255, 0]));
    expect((await statusOf(client)).status).toBe('Success');
    expect(channel(client.messages, 1)).toBe('fragmented\n');
  });

  it('hands resize messages (channel 4) to the backend', async () => {
    const url = server.url('exec', { ...base, stdin: true, stderr: false, tty: true, cmd: ['cat'] });
    const client = await WsTestClient.connect(url, ['v5.channel.k8s.io']);
    backend.resizes.length = 0;
    const seen = new Promise<void>((resolve) => backend.once('resize', () => resolve()));
    client.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":132,"Height":43}')]));
    await seen;
    expect(backend.resizes).toEqual([{ width: 132, height: 43 }]);
    client.send(Buffer.from([255, 0]));
    expect((await statusOf(client)).status).toBe('Success');
  });

  it('speaks the base64 variant: text messages, a channel digit, then base64', async () => {
    const client = await WsTestClient.connect(
      server.url('exec', { ...base, stderr: false, cmd: ['echo', 'b64'] }),
      ['v4.base64.channel.k8s.io'],
    );
    await client.closed;
    const text = client.messages.map((m) => m.data.toString());
    expect(client.messages.every((m) => !m.binary)).toBe(true);
    const out = text
      .filter((t) => t.startsWith('1'))
      .map((t) => Buffer.from(t.slice(1), 'base64').toString());
    expect(out.join('')).toBe('b64\n');
    const status = text.find((t) => t.startsWith('3'));
    expect(JSON.parse(Buffer.from(status?.slice(1) ?? '', 'base64').toString()).status).toBe('Success');
  });

  it('refuses subprotocols it does not speak with 403, and a spent token with 404', async () => {
    const url = server.url('exec', { ...base, cmd: ['true'] });
    const refused = await WsTestClient.connect(url, ['v9.channel.k8s.io']);
    expect(refused.response.status).toBe(403);
    expect(refused.response.body).toContain('v5.channel.k8s.io');
    expect((await WsTestClient.connect(url, ['v5.channel.k8s.io'])).response.status).toBe(404);
  });
});

describe('port-forward over WebSocket', () => {
  it("announces the port on both channels, then relays data to the pod's port and back", async () => {
    const url = server.url('portforward', { podSandboxId: 'p1', ports: [echoPort] });
    const client = await WsTestClient.connect(url, ['v4.channel.k8s.io']);
    expect(client.response.status).toBe(101);
    const port = Buffer.alloc(2);
    port.writeUInt16LE(echoPort, 0);
    await client.waitFor((m) => m.data.equals(Buffer.concat([Buffer.from([1]), port])));
    expect(client.messages[0]?.data).toEqual(Buffer.concat([Buffer.from([0]), port]));
    client.send(Buffer.from('\x00round trip'));
    await client.waitFor(() => channel(client.messages.slice(1), 0) === 'round trip');
    client.close();
  });

  it('takes the ports from the query when the request named none', async () => {
    const url = `${server.url('portforward', { podSandboxId: 'p1', ports: [] })}?ports=${echoPort}`;
    const client = await WsTestClient.connect(url, ['v4.channel.k8s.io']);
    expect(client.response.status).toBe(101);
    client.send(Buffer.from('\x00q'));
    await client.waitFor(() => channel(client.messages.slice(1), 0) === 'q');
    client.close();
    const none = await WsTestClient.connect(server.url('portforward', { podSandboxId: 'p1', ports: [] }), []);
    expect(none.response.status).toBe(400);
  });
});
