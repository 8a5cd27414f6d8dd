import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { BerthError } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawUpgrade } from '../testdata/http-upgrade.js';
import { ProcessBackend } from '../testdata/process-backend.js';
import { SpdyTestClient } from '../testdata/spdy-client.js';
import { createStreamingServer, type StreamingServer } from './index.js';

// The streaming server driven over SPDY/3.1 the way client-go's remotecommand and portforward do,
// against a backend that runs real processes and dials a real TCP echo server.

let backend: ProcessBackend;
let server: StreamingServer;
let clock = 0;
let echo: Server;
let echoPort: number;

beforeAll(async () => {
  backend = new ProcessBackend();
  server = await createStreamingServer({
    backend,
    now: () => Date.now() + clock,
    streamCreationTimeoutMs: 2_000,
  });
  echo = createServer((s) => s.pipe(s)).listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as { port: number }).port;
});

afterAll(async () => {
  await server?.close();
  echo?.close();
});

const want = { stdin: false, stdout: true, stderr: true, tty: false };
const execUrl = (cmd: string[], opts: Partial<typeof want> = {}) =>
  server.url('exec', { containerId: 'c1', cmd, ...want, ...opts });

/** Opens the streams client-go opens for exec (error first), in its order. */
async function openCommand(url: string, o: typeof want, protocols = ['v4.channel.k8s.io']) {
  const client = await SpdyTestClient.connect(url, protocols);
  expect(client.response.status).toBe(101);
  const error = await client.open({ streamType: 'error' });
  const stdin = o.stdin ? await client.open({ streamType: 'stdin' }) : undefined;
  const stdout = o.stdout ? await client.open({ streamType: 'stdout' }) : undefined;
  const stderr = o.stderr ? await client.open({ streamType: 'stderr' }) : undefined;
  const resize = o.tty ? await client.open({ streamType: 'resize' }) : undefined;
  return { client, error, stdin, stdout, stderr, resize };
}

describe('exec over SPDY/3.1', () => {
  it('delivers stdout and stderr and reports exit 0 as a Success status (v4)', async () => {
    const s = await openCommand(execUrl(['sh', '-c', 'echo out; echo err >&2']), want);
    expect(s.client.response.headers['x-stream-protocol-version']).toBe('v4.channel.k8s.io');
    expect((await s.stdout?.done)?.toString()).toBe('out\n');
    expect((await s.stderr?.done)?.toString()).toBe('err\n');
    expect(JSON.parse((await s.error.done).toString())).toEqual({ metadata: {}, status: 'Success' });
    await s.client.goaway;
    s.client.close();
  });

  it('reports a non-zero exit as NonZeroExitCode with an ExitCode cause', async () => {
    const s = await openCommand(execUrl(['sh', '-c', 'echo bye; exit 3'], { stderr: false }), {
      ...want,
      stderr: false,
    });
    expect((await s.stdout?.done)?.toString()).toBe('bye\n');
    const status = JSON.parse((await s.error.done).toString());
    expect(status).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode' });
    expect(status.details.causes).toEqual([{ reason: 'ExitCode', message: '3' }]);
    s.client.close();
  });

  it('pipes stdin to the command and carries 256 KiB each way with a client that grants no window', async () => {
    const s = await openCommand(execUrl(['cat'], { stdin: true, stderr: false }), {
      ...want,
      stdin: true,
      stderr: false,
    });
    const payload = Buffer.alloc(256 * 1024, 'abcdefgh');
    await s.stdin?.write(payload);
    await s.stdin?.end();
    expect((await s.stdout?.done)?.equals(payload)).toBe(true);
    expect(JSON.parse((await s.error.done).toString()).status).toBe('Success');
    s.client.close();
  });

  it('honours a flow-controlling client: never more in flight than the 1 KiB window it set', async () => {
    const url = execUrl(['sh', '-c', 'head -c 300000 /dev/zero'], { stderr: false });
    const client = await SpdyTestClient.connect(url, ['v4.channel.k8s.io'], {
      flowControl: true,
      initialWindow: 1024,
    });
    const error = await client.open({ streamType: 'error' });
    const stdout = await client.open({ streamType: 'stdout' });
    expect((await stdout.done).length).toBe(300_000);
    expect(JSON.parse((await error.done).toString()).status).toBe('Success');
    expect(client.maxOutstanding).toBe(1024);
    client.close();
  });

  it('sends past 64 KiB to a client that grants no window (spdystream does none)', async () => {
    const url = execUrl(['sh', '-c', 'head -c 300000 /dev/zero'], { stderr: false });
    const client = await SpdyTestClient.connect(url, ['v4.channel.k8s.io']);
    await client.open({ streamType: 'error' });
    const stdout = await client.open({ streamType: 'stdout' });
    expect((await stdout.done).length).toBe(300_000);
    expect(client.maxOutstanding).toBe(300_000);
    client.close();
  });

  it('hands resize messages to the backend in order (tty)', async () => {
    const o = { stdin: true, stdout: true, stderr: false, tty: true };
    const s = await openCommand(execUrl(['cat'], o), o);
    const seen = new Promise<void>((resolve) => {
      const check = () => {
        if (backend.resizes.length >= 2) resolve();
        else backend.once('resize', check);
      };
      check();
    });
    backend.resizes.length = 0;
    await s.resize?.write('{"Width":100,"Height":40}\n{"Width":120,');
    await s.resize?.write('"Height":50}\n');
    await seen;
    expect(backend.resizes).toEqual([
      { width: 100, height: 40 },
      { width: 120, height: 50 },
    ]);
    await s.stdin?.end();
    expect(JSON.parse((await s.error.done).toString()).status).toBe('Success');
    s.client.close();
  });

  it('speaks v3 when the client offers only it: a failure is plain text, success is silent', async () => {
    const fail = await openCommand(
      execUrl(['sh', '-c', 'exit 7'], { stderr: false }),
      { ...want, stderr: false },
      ['v3.channel.k8s.io'],
    );
    expect(fail.client.response.headers['x-stream-protocol-version']).toBe('v3.channel.k8s.io');
    expect((await fail.error.done).toString()).toBe(
      'command terminated with non-zero exit code: exit status 7',
    );
    fail.client.close();
    const ok = await openCommand(execUrl(['true'], { stderr: false }), { ...want, stderr: false }, [
      'v3.channel.k8s.io',
    ]);
    expect((await ok.error.done).length).toBe(0);
    ok.client.close();
  });

  it('answers PING', async () => {
    const s = await openCommand(execUrl(['sh', '-c', 'read x'], { stdin: true, stderr: false }), {
      ...want,
      stdin: true,
      stderr: false,
    });
    await s.client.ping(1);
    await s.stdin?.end();
    await s.error.done;
    s.client.close();
  });
});

describe('attach over SPDY/3.1', () => {
  it("connects stdin and stdout to the container's process", async () => {
    const o = { stdin: true, stdout: true, stderr: false, tty: false };
    const s = await openCommand(server.url('attach', { containerId: 'c1', ...o }), o);
    await s.stdin?.write('joe\n');
    expect((await s.stdout?.done)?.toString()).toBe('attached:joe\n');
    expect(JSON.parse((await s.error.done).toString()).status).toBe('Success');
    s.client.close();
  });
});

describe('tokens and handshake', () => {
  it('accepts a URL once: the second use is 404', async () => {
    const url = execUrl(['true'], { stderr: false });
    const s = await openCommand(url, { ...want, stderr: false });
    await s.error.done;
    s.client.close();
    const again = await SpdyTestClient.connect(url, ['v4.channel.k8s.io']);
    expect(again.response.status).toBe(404);
  });

  it('refuses an expired URL, an unknown token and a token on the wrong path with 404', async () => {
    const url = execUrl(['true']);
    clock += 61_000;
    try {
      expect((await SpdyTestClient.connect(url, ['v4.channel.k8s.io'])).response.status).toBe(404);
    } finally {
      clock -= 61_000;
    }
    expect(
      (await SpdyTestClient.connect(`${server.baseUrl}/exec/nosuchtoken`, ['v4.channel.k8s.io'])).response
        .status,
    ).toBe(404);
    const attachToken = server
      .url('attach', { containerId: 'c1', ...want })
      .split('/')
      .pop();
    expect(
      (await SpdyTestClient.connect(`${server.baseUrl}/exec/${attachToken}`, ['v4.channel.k8s.io'])).response
        .status,
    ).toBe(404);
  });

  it('refuses an unknown protocol version with 403 naming what it accepts, and a missing one with 400', async () => {
    const bad = await SpdyTestClient.connect(execUrl(['true']), ['v99.channel.k8s.io']);
    expect(bad.response.status).toBe(403);
    expect(bad.response.headers['x-accepted-stream-protocol-versions']).toContain('v4.channel.k8s.io');
    expect(bad.response.body).toContain('unable to negotiate protocol');
    const none = await rawUpgrade(execUrl(['true']), ['Connection: Upgrade', 'Upgrade: SPDY/3.1']);
    expect(none.status).toBe(400);
    expect(none.body).toContain('X-Stream-Protocol-Version is required');
  });

  it('validates requests before issuing a URL', () => {
    expect(() => server.url('exec', { containerId: '', cmd: ['true'], ...want })).toThrow(BerthError);
    expect(() => server.url('exec', { containerId: 'c', cmd: ['true'], ...want, tty: true })).toThrow(
      /tty and stderr/,
    );
    expect(() => server.url('portforward', { podSandboxId: 'p', ports: [70_000] })).toThrow(/not a port/);
  });
});

describe('port-forward over SPDY/3.1', () => {
  it('forwards each request pair to the port and back, several on one connection', async () => {
    const client = await SpdyTestClient.connect(
      server.url('portforward', { podSandboxId: 'p1', ports: [] }),
      ['portforward.k8s.io'],
    );
    expect(client.response.status).toBe(101);
    for (const requestID of ['0', '1']) {
      const port = String(echoPort);
      const error = await client.open({ streamType: 'error', port, requestID });
      const data = await client.open({ streamType: 'data', port, requestID });
      await data.write(`hello ${requestID}`);
      await data.end();
      expect((await data.done).toString()).toBe(`hello ${requestID}`);
      expect((await error.done).length).toBe(0);
    }
    client.close();
  });

  it('reports a port nobody listens on on the error stream', async () => {
    const closed = createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = String((closed.address() as { port: number }).port);
    closed.close();
    const client = await SpdyTestClient.connect(
      server.url('portforward', { podSandboxId: 'p1', ports: [] }),
      ['portforward.k8s.io'],
    );
    const error = await client.open({ streamType: 'error', port, requestID: '0' });
    await client.open({ streamType: 'data', port, requestID: '0' });
    expect((await error.done).toString()).toMatch(
      new RegExp(`error forwarding port ${port} to pod p1: .*ECONNREFUSED`),
    );
    await expect(client.open({ streamType: 'data', port: '0', requestID: '1' })).rejects.toThrow(/reset/);
    client.close();
  });
});
