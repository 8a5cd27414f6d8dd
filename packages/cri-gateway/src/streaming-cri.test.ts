import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningMetrics, startMetrics, startTelemetry, type Telemetry } from '@berth/kit';
import { parsePrometheusText } from '@berth/kit/metrics-text';
import { readSpans, type SpanRecord } from '@berth/kit/tracing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCtr,
  ctrStatus,
  exec,
  grpcError,
  type Json,
  NOT_FOUND,
  rpc,
  runPod,
  startPodStack,
  until,
} from './testdata/pod-fixtures.js';
import type { RuntimeStack } from './testdata/runtime-stack.js';
import { SpdyTestClient } from './testdata/spdy-client.js';
import { WsTestClient } from './testdata/ws-client.js';

// CRI Exec, Attach and PortForward end to end: the RPC hands out a URL of the gateway's streaming
// server, a SPDY (or WebSocket) client drives it as kubectl/crictl do, and the session runs in a
// real container (task-service exec under conmon, nsenter into the pod's network namespace).

const FAILED_PRECONDITION = 9;
const PROTOCOLS = ['v4.channel.k8s.io'];

let s: RuntimeStack;
let pod: string;
let ctr: string;
// The gateway's metrics and spans, as its process records them (started before the gateway, so
// its instruments record): the last test reads them.
let metrics: RunningMetrics;
let telemetry: Telemetry;
const spanDir = mkdtempSync(join(tmpdir(), 'berth-cri-stream-spans-'));

beforeAll(async () => {
  telemetry = startTelemetry({ service: 'cri-gateway', version: '0.0.0', node: 'test', storeDir: spanDir });
  metrics = await startMetrics({
    service: 'cri-gateway',
    version: '0.0.0',
    node: 'test',
    address: { host: '127.0.0.1', port: 0 },
  });
  ({ s } = await startPodStack());
  pod = await runPod('stream');
  ctr = await createCtr(pod, 'stream', 'main');
  await rpc('StartContainer', { container_id: ctr });
}, 180_000);

afterAll(async () => {
  await s?.stop();
  await metrics?.shutdown();
  await telemetry?.shutdown();
  rmSync(spanDir, { recursive: true, force: true });
}, 60_000);

type Flags = { stdin?: boolean; stdout?: boolean; stderr?: boolean; tty?: boolean };

/** Exec's URL for `cmd` in `id` with the given streams (stdout and stderr by default). */
async function execUrl(id: string, cmd: string[], f: Flags = {}): Promise<string> {
  const req = { container_id: id, cmd, stdout: true, stderr: !f.tty, ...f };
  return (await rpc<{ url: string }>('Exec', req)).url;
}

/** Connects to a command URL and opens the streams client-go opens, error first. */
async function openCommand(url: string, f: Flags) {
  const client = await SpdyTestClient.connect(url, PROTOCOLS);
  expect(client.response.status).toBe(101);
  const error = await client.open({ streamType: 'error' });
  const stdin = f.stdin ? await client.open({ streamType: 'stdin' }) : undefined;
  const stdout = f.stdout ? await client.open({ streamType: 'stdout' }) : undefined;
  const stderr = f.stderr ? await client.open({ streamType: 'stderr' }) : undefined;
  const resize = f.tty ? await client.open({ streamType: 'resize' }) : undefined;
  return { client, error, stdin, stdout, stderr, resize };
}

/** The metav1 Status the server sent on the error stream. */
async function statusOf(error: { done: Promise<Buffer> }): Promise<Json> {
  return JSON.parse((await error.done).toString()) as Json;
}

describe('CRI Exec', () => {
  it('returns stdout, stderr and the exit code through the status stream', async () => {
    const f = { stdout: true, stderr: true };
    const c = await openCommand(await execUrl(ctr, ['sh', '-c', 'echo hi; echo oops >&2; exit 3']), f);
    expect((await c.stdout?.done)?.toString()).toBe('hi\n');
    expect((await c.stderr?.done)?.toString()).toBe('oops\n');
    expect(await statusOf(c.error)).toMatchObject({
      status: 'Failure',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '3' }] },
    });
    c.client.close();
  });

  it('copies stdin to the command until it ends (cat round trip)', async () => {
    const f = { stdin: true, stdout: true, stderr: true };
    const c = await openCommand(await execUrl(ctr, ['cat'], f), f);
    await c.stdin?.write('ping ');
    await c.stdin?.write('pong\n');
    await c.stdin?.end();
    expect((await c.stdout?.done)?.toString()).toBe('ping pong\n');
    expect(await statusOf(c.error)).toEqual({ metadata: {}, status: 'Success' });
    c.client.close();
  });

  it('moves 2 MB through cat byte-exact (stdin paced by the monitor)', async () => {
    const f = { stdin: true, stdout: true, stderr: true };
    const c = await openCommand(await execUrl(ctr, ['cat'], f), f);
    const payload = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 251;
    for (let off = 0; off < payload.length; off += 64 * 1024) {
      await c.stdin?.write(payload.subarray(off, off + 64 * 1024));
    }
    await c.stdin?.end();
    const got = await c.stdout?.done;
    expect(got?.length).toBe(payload.length);
    expect(got?.equals(payload)).toBe(true);
    expect(await statusOf(c.error)).toEqual({ metadata: {}, status: 'Success' });
    c.client.close();
  });

  it('gives a TTY the size the client sends', async () => {
    const f = { stdin: true, stdout: true, tty: true };
    // The command starts once the streams are up and the size follows on its own stream, so it
    // may run before or after the size is set (as under containerd): it prints the size once the
    // TTY has one, at once or on the SIGWINCH the size's arrival sends it.
    const waitForSize =
      'trap \'stty size; exit\' WINCH; s=$(stty size 2>/dev/null); if [ -n "$s" ] && [ "$s" != "0 0" ]; then echo "$s"; exit; fi; while :; do sleep 0.05; done';
    const c = await openCommand(await execUrl(ctr, ['sh', '-c', waitForSize], f), f);
    await c.resize?.write('{"Width":123,"Height":45}\n');
    expect((await c.stdout?.done)?.toString()).toContain('45 123');
    expect(await statusOf(c.error)).toEqual({ metadata: {}, status: 'Success' });
    c.client.close();
  });

  it('runs over WebSocket too (v5.channel.k8s.io)', async () => {
    const url = await execUrl(ctr, ['sh', '-c', 'echo ws; exit 7']);
    const client = await WsTestClient.connect(url, ['v5.channel.k8s.io']);
    expect(client.response.status).toBe(101);
    await client.closed;
    const on = (n: number) =>
      Buffer.concat(client.messages.filter((m) => m.data[0] === n).map((m) => m.data.subarray(1))).toString();
    expect(on(1)).toBe('ws\n');
    expect(JSON.parse(on(3))).toMatchObject({
      reason: 'NonZeroExitCode',
      details: { causes: [{ message: '7' }] },
    });
  });

  it('kills the command when the client goes away', async () => {
    const f = { stdout: true, stderr: true };
    const c = await openCommand(await execUrl(ctr, ['sleep', '4242']), f);
    const running = async () => (await exec(ctr, ['ps', '-o', 'args'])).stdout.toString();
    await until('the exec to run', async () => (await running()).includes('sleep 4242'));
    c.client.socket.destroy();
    await until('the exec to be killed', async () => !(await running()).includes('sleep 4242'));
  });

  it('refuses a URL used once already', async () => {
    const url = await execUrl(ctr, ['true']);
    const c = await openCommand(url, { stdout: true, stderr: true });
    expect(await statusOf(c.error)).toEqual({ metadata: {}, status: 'Success' });
    c.client.close();
    const again = await SpdyTestClient.connect(url, PROTOCOLS);
    expect(again.response.status).toBe(404);
    again.socket.destroy();
  });

  it('answers NOT_FOUND for an unknown container and FAILED_PRECONDITION for a stopped one', async () => {
    const req = { cmd: ['true'], stdout: true };
    expect((await grpcError(rpc('Exec', { ...req, container_id: 'nope' }))).code).toBe(NOT_FOUND);
    expect((await grpcError(rpc('Attach', { container_id: 'nope', stdout: true }))).code).toBe(NOT_FOUND);
    expect((await grpcError(rpc('PortForward', { pod_sandbox_id: 'nope', port: [80] }))).code).toBe(
      NOT_FOUND,
    );
    const stopped = await createCtr(pod, 'stream', 'stopped', { command: ['true'] });
    expect((await grpcError(rpc('Exec', { ...req, container_id: stopped }))).code).toBe(FAILED_PRECONDITION);
  });
});

describe('CRI Attach', () => {
  it('connects to the main process of a TTY container; the end of input detaches', async () => {
    const id = await createCtr(pod, 'stream', 'tty', {
      command: ['sh', '-c', 'while read line; do echo "got:$line"; done'],
      stdin: true,
      tty: true,
    });
    await rpc('StartContainer', { container_id: id });
    const f = { stdin: true, stdout: true, tty: true };
    const url = (await rpc<{ url: string }>('Attach', { container_id: id, ...f })).url;
    const c = await openCommand(url, f);
    await c.resize?.write('{"Width":80,"Height":24}\n');
    await c.stdin?.write('hello\n');
    await until('the answer', () => c.stdout?.received().toString().includes('got:hello'));
    await c.stdin?.end();
    expect(await statusOf(c.error)).toEqual({ metadata: {}, status: 'Success' });
    c.client.close();
    expect((await ctrStatus(id)).state).toBe('CONTAINER_RUNNING');
    await rpc('StopContainer', { container_id: id, timeout: 0 });
  });

  it("closes a stdin-once container's stdin at the end of input; its exit is Success, as the kubelet's server reports it", async () => {
    const id = await createCtr(pod, 'stream', 'once', {
      command: ['sh', '-c', 'cat; echo bye; exit 4'],
      stdin: true,
      stdin_once: true,
    });
    await rpc('StartContainer', { container_id: id });
    const f = { stdin: true, stdout: true, stderr: true };
    const url = (await rpc<{ url: string }>('Attach', { container_id: id, ...f })).url;
    const c = await openCommand(url, f);
    await c.stdin?.write('abc\n');
    await c.stdin?.end();
    expect((await c.stdout?.done)?.toString()).toBe('abc\nbye\n');
    // No exit code on attach's error stream (kubectl and crictl would end 1 with it): the status has it.
    expect(await statusOf(c.error)).toEqual({ metadata: {}, status: 'Success' });
    c.client.close();
    await until('the exit in the status', async () => (await ctrStatus(id)).exit_code === 4);
  });
});

describe('CRI PortForward', () => {
  it("relays bytes to a port on the pod's loopback and back", async () => {
    const id = await createCtr(pod, 'stream', 'echo', { command: ['nc', '-l', '-p', '8080', '-e', 'cat'] });
    await rpc('StartContainer', { container_id: id });
    // Listening on 8080 (0x1F90, state 0A) in the pod's network namespace (busybox binds [::]).
    await until('nc to listen', async () =>
      /:1F90 0+:0000 0A/.test((await exec(id, ['cat', '/proc/net/tcp', '/proc/net/tcp6'])).stdout.toString()),
    );
    const url = (await rpc<{ url: string }>('PortForward', { pod_sandbox_id: pod, port: [8080] })).url;
    const client = await SpdyTestClient.connect(url, ['portforward.k8s.io']);
    expect(client.response.status).toBe(101);
    const error = await client.open({ streamType: 'error', port: '8080', requestID: '0' });
    const data = await client.open({ streamType: 'data', port: '8080', requestID: '0' });
    await data.write('round trip\n');
    await until('the echo', () => data.received().toString() === 'round trip\n');
    await data.end();
    expect((await data.done).toString()).toBe('round trip\n');
    expect((await error.done).length).toBe(0);
    client.close();
  });

  it('reports a port nobody listens on on the error stream', async () => {
    const url = (await rpc<{ url: string }>('PortForward', { pod_sandbox_id: pod, port: [] })).url;
    const client = await SpdyTestClient.connect(url, ['portforward.k8s.io']);
    const error = await client.open({ streamType: 'error', port: '9', requestID: '0' });
    await client.open({ streamType: 'data', port: '9', requestID: '0' });
    expect((await error.done).toString()).toMatch(/error forwarding port 9 to pod .*ECONNREFUSED/);
    client.close();
  });
});

describe('streaming sessions observed', () => {
  const series = async (name: string, labels: Record<string, string>) =>
    parsePrometheusText(await metrics.scrape())
      .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
      .reduce((t, x) => t + x.value, 0);

  it('counts an exec session and its bytes, and traces it under the Exec call down to the shim', async () => {
    const before = await series('berth_cri_streaming_sessions_total', { kind: 'exec' });
    const outBefore = await series('berth_cri_streaming_bytes_total', { kind: 'exec', direction: 'out' });
    const url = await execUrl(ctr, ['sh', '-c', 'echo observed; exit 5']);
    const client = await WsTestClient.connect(url, ['v5.channel.k8s.io']);
    await client.closed;
    expect(await series('berth_cri_streaming_sessions_total', { kind: 'exec' })).toBe(before + 1);
    expect(
      await series('berth_cri_streaming_bytes_total', { kind: 'exec', direction: 'out' }),
    ).toBeGreaterThan(outBefore + 'observed\n'.length);
    // The span ends when the server side of the connection closes; the store is written every 200 ms.
    let spans: SpanRecord[] = [];
    const session = await until('the session span', async () => {
      spans = await readSpans(spanDir);
      return spans.find((x) => x.name === 'cri stream exec' && x.attributes['process.exit.code'] === 5);
    });
    expect(session).toMatchObject({
      kind: 1,
      attributes: { 'berth.container.id': ctr, 'berth.stream.transport': 'websocket' },
    });
    expect(spans.find((x) => x.spanId === session.parentSpanId)?.name).toBe('cri/RuntimeService/Exec');
    // The exec it ran is its child: the gateway's call to the task-service.
    expect(spans.some((x) => x.parentSpanId === session.spanId && x.kind === 2)).toBe(true);
    expect(await series('berth_cri_streaming_sessions_active', { kind: 'exec' })).toBe(0);
  });
});
