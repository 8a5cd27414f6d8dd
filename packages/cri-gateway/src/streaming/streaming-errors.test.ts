import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessBackend } from '../testdata/process-backend.js';
import { SpdyTestClient } from '../testdata/spdy-client.js';
import { WsTestClient } from '../testdata/ws-client.js';
import { createStreamingServer, type StreamingServer } from './index.js';
import { encodeSynStream } from './spdy-frames.js';

// How the streaming server behaves when things go wrong: the runtime fails, the client leaves,
// the client never opens its streams, or it speaks broken SPDY or WebSocket.

let backend: ProcessBackend;
let server: StreamingServer;

beforeAll(async () => {
  backend = new ProcessBackend();
  // Long enough for a client on a loaded machine to open its streams; the test of a client that
  // never opens them has a server of its own with a short limit.
  server = await createStreamingServer({ backend, streamCreationTimeoutMs: 5000 });
});

afterAll(async () => {
  await server?.close();
});

const base = { containerId: 'c1', stdin: false, stdout: true, stderr: false, tty: false };

describe('streaming failures', () => {
  it('reports a backend that cannot run the command as an InternalError status', async () => {
    const client = await SpdyTestClient.connect(
      server.url('exec', { ...base, cmd: ['/nonexistent/berth-test'] }),
      ['v4.channel.k8s.io'],
    );
    const error = await client.open({ streamType: 'error' });
    await client.open({ streamType: 'stdout' });
    const status = JSON.parse((await error.done).toString());
    expect(status).toMatchObject({ status: 'Failure', reason: 'InternalError', code: 500 });
    expect(status.message).toContain(
      'error executing command in container: spawn /nonexistent/berth-test ENOENT',
    );
    client.close();
  });

  it('aborts the backend when the client goes away mid-command', async () => {
    const client = await WsTestClient.connect(server.url('exec', { ...base, cmd: ['sleep', '1000'] }), [
      'v5.channel.k8s.io',
    ]);
    await client.waitFor((m) => m.data[0] === 1); // the server's ready message: the command runs
    const exited = once(backend, 'exit');
    client.close();
    const [{ signal }] = await exited;
    expect(signal).toBe('SIGKILL');
  });

  it('survives a SPDY client that vanishes while the command floods stdout', async () => {
    const client = await SpdyTestClient.connect(server.url('exec', { ...base, cmd: ['yes'] }), [
      'v4.channel.k8s.io',
    ]);
    await client.open({ streamType: 'error' });
    const stdout = await client.open({ streamType: 'stdout' });
    await new Promise<void>((resolve) => {
      const check = () => (stdout.received().length > 100_000 ? resolve() : setImmediate(check));
      check();
    });
    const exited = once(backend, 'exit');
    client.close();
    const [{ signal }] = await exited;
    expect(signal).toBe('SIGKILL');
  });

  it('gives up on a SPDY client that does not open the streams it asked for', async () => {
    const impatient = await createStreamingServer({ backend, streamCreationTimeoutMs: 300 });
    try {
      const client = await SpdyTestClient.connect(impatient.url('exec', { ...base, cmd: ['true'] }), [
        'v4.channel.k8s.io',
      ]);
      await client.open({ streamType: 'error' });
      await client.goaway;
      await client.closed;
      expect(backend.execs.some((e) => e.cmd[0] === 'true')).toBe(false);
    } finally {
      await impatient.close();
    }
  });

  it('refuses a stream of unknown type with RST_STREAM and keeps the connection', async () => {
    const client = await SpdyTestClient.connect(server.url('exec', { ...base, cmd: ['echo', 'still'] }), [
      'v4.channel.k8s.io',
    ]);
    await expect(client.open({ streamType: 'bogus' })).rejects.toThrow(/reset with status 3/);
    const error = await client.open({ streamType: 'error' });
    const stdout = await client.open({ streamType: 'stdout' });
    expect((await stdout.done).toString()).toBe('still\n');
    expect(JSON.parse((await error.done).toString()).status).toBe('Success');
    client.close();
  });

  it('answers a malformed SPDY connection with GOAWAY PROTOCOL_ERROR', async () => {
    const client = await SpdyTestClient.connect(server.url('exec', { ...base, cmd: ['true'] }), [
      'v4.channel.k8s.io',
    ]);
    // An even stream id is the server's to use: a client opening one breaks the protocol.
    client.raw(
      encodeSynStream(
        2,
        Buffer.from([
          0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2, 0x62, 0x60, 0x60, 0x60, 0x00, 0x00, 0x00, 0xff, 0xff,
        ]),
      ),
    );
    await client.closed;
    expect(client.frames).toContainEqual({ kind: 'goaway', lastGoodStreamId: 0, status: 1 });
  });

  it('answers a plain request (no upgrade) with 400 and burns the token, and a bad path with 404', async () => {
    const url = server.url('exec', { ...base, cmd: ['true'] });
    const plain = await fetch(url);
    expect(plain.status).toBe(400);
    expect(await plain.text()).toContain('unable to upgrade');
    expect((await fetch(url)).status).toBe(404);
    expect((await fetch(`${server.baseUrl}/nothing/here`)).status).toBe(404);
  });

  it('puts the advertised host in URLs, with IPv6 in brackets', async () => {
    const other = await createStreamingServer({ backend, advertiseHost: '::1' });
    try {
      const url = new URL(other.url('exec', { ...base, cmd: ['true'] }));
      expect(url.hostname).toBe('[::1]');
      expect(url.pathname).toMatch(/^\/exec\/[A-Za-z0-9_-]{16}$/);
    } finally {
      await other.close();
    }
  });

  it('closes a WebSocket whose client sends an unmasked frame with 1002', async () => {
    const client = await WsTestClient.connect(server.url('exec', { ...base, cmd: ['sleep', '1000'] }), [
      'v5.channel.k8s.io',
    ]);
    client.socket.write(Buffer.from([0x82, 0x01, 0x00]));
    await client.closed;
    expect(client.closeCode).toBe(1002);
  });
});
