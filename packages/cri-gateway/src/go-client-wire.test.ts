import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectNats, createLogger } from '@berth/kit';
import { startNats } from '@berth/testing';
import * as grpc from '@grpc/grpc-js';
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Gateway, startGateway } from './gateway.js';
import { createCriServer } from './grpc/server.js';
import { implemented } from './handlers/index.js';
import { CriService, criServiceDefinition } from './proto.js';
import { criClient } from './testdata/cri-client.js';
import {
  Flag,
  FrameType,
  frame,
  GoLikeEncoder,
  goHeaders,
  grpcMessage,
  hpackInt,
  RawH2Connection,
  type StreamResult,
} from './testdata/raw-h2.js';

// The CRI socket as Go gRPC clients (crictl, critest, kubelet) reach it: their exact HTTP/2 header
// blocks, written frame by frame. The control server is plain grpc-js on a unix socket, as berth
// served it before; nghttp2 resets the same streams there, so these tests cannot pass vacuously.

const VERSION = '/runtime.v1.RuntimeService/Version';
const PROTOCOL_ERROR = 1;
const runtimeDef = criServiceDefinition(CriService.runtime);
const versionMethod = runtimeDef.Version;
if (!versionMethod) throw new Error('the CRI proto has no RuntimeService/Version');
const versionBody = grpcMessage(versionMethod.requestSerialize({ version: '0.1.0' }));

const log = createLogger({ service: 'cri-gateway', node: 'test', level: 'silent' });
let nats: Awaited<ReturnType<typeof startNats>>;
let nc: NatsConnection;
let root: string;
let socket: string;
let gateway: Gateway;
let plainSocket: string;
let frontSocket: string;
let frontGateway: Gateway;
let plain: grpc.Server;

beforeAll(async () => {
  nats = await startNats({ jetstream: false });
  nc = await connectNats({ url: nats.url, name: 'cri-wire-test' });
  root = await mkdtemp(join(tmpdir(), 'berth-cri-wire-'));
  const runRoot = join(root, 'run');
  socket = join(runRoot, 'cri.sock');
  gateway = await startGateway({
    nc,
    node: 'wire',
    socket,
    runRoot,
    snapshotsDir: join(root, 'snap'),
    containersDir: join(root, 'containers'),
    log,
  });
  // The gateway on grpc-js behind the authority front (services.cri-gateway.grpcServer "grpc-js").
  frontSocket = join(runRoot, 'front.sock');
  frontGateway = await startGateway({
    nc,
    node: 'wire',
    socket: frontSocket,
    runRoot,
    snapshotsDir: join(root, 'snap'),
    containersDir: join(root, 'containers'),
    log,
    grpcServer: 'grpc-js',
  });
  plainSocket = join(root, 'plain.sock');
  // Version needs no dependency; the access log needs a logger.
  plain = createCriServer({ deps: { log } as never, handlers: implemented });
  await new Promise<void>((resolve, reject) =>
    plain.bindAsync(`unix:${plainSocket}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
});

afterAll(async () => {
  await gateway?.close(500);
  await frontGateway?.close(500);
  plain?.forceShutdown();
  await nc?.close();
  await nats?.stop();
  await rm(root, { recursive: true, force: true });
});

/** Sends one unary Version call as grpc-go does: HEADERS, then the message with END_STREAM. */
function sendVersion(
  conn: RawH2Connection,
  enc: GoLikeEncoder,
  id: number,
  authority?: string,
): Promise<StreamResult> {
  const block = enc.encode(goHeaders(VERSION, authority));
  conn.write(
    Buffer.concat([
      frame(FrameType.HEADERS, Flag.END_HEADERS, id, block),
      frame(FrameType.DATA, Flag.END_STREAM, id, versionBody),
    ]),
  );
  return conn.result(id);
}

/** Asserts a successful Version reply naming berth. */
function expectBerth(r: StreamResult): void {
  expect(r.rstCode).toBeUndefined();
  expect(r.headers[':status']).toBe('200');
  expect(r.headers['content-type']).toBe('application/grpc+proto');
  expect(r.trailers['grpc-status']).toBe('0');
  expect(versionMethod?.responseDeserialize(r.data.subarray(5))).toMatchObject({
    runtime_name: 'berth',
    runtime_api_version: 'v1',
  });
}

describe('a Go gRPC client on the CRI socket', () => {
  it('is answered whether :authority is the socket path, localhost, or absent', async () => {
    for (const authority of [socket, 'localhost', undefined]) {
      const conn = await RawH2Connection.open(socket);
      expectBerth(await sendVersion(conn, new GoLikeEncoder(), 1, authority));
      conn.close();
    }
  });

  it('is answered by the grpc-js server through the authority front too', async () => {
    for (const authority of [frontSocket, 'localhost', undefined]) {
      const conn = await RawH2Connection.open(frontSocket);
      expectBerth(await sendVersion(conn, new GoLikeEncoder(), 1, authority));
      conn.close();
    }
  });

  it('keeps the HPACK tables in step over many calls on one connection', async () => {
    const conn = await RawH2Connection.open(socket);
    const enc = new GoLikeEncoder();
    // The first call fills the client's dynamic table; the later ones are mostly table indexes.
    for (let id = 1; id <= 9; id += 2) expectBerth(await sendVersion(conn, enc, id, socket));
    conn.close();
  });

  it('reads a header block padded, with priority, and split over CONTINUATION frames', async () => {
    const conn = await RawH2Connection.open(socket);
    const block = new GoLikeEncoder().encode(goHeaders(VERSION, socket));
    const padding = 7;
    const headers = Buffer.concat([
      Buffer.of(padding),
      Buffer.from([0, 0, 0, 0, 15]), // priority: stream dependency 0, weight 16
      block.subarray(0, 10),
      Buffer.alloc(padding),
    ]);
    conn.write(
      Buffer.concat([
        frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, headers),
        frame(FrameType.CONTINUATION, 0, 1, block.subarray(10, 30)),
        frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(30)),
        frame(FrameType.DATA, Flag.END_STREAM, 1, versionBody),
      ]),
    );
    expectBerth(await conn.result(1));
    conn.close();
  });

  it('carries a large message across many frames and flow-control windows unchanged', async () => {
    // A 3 MiB request (unknown to Version, which ignores it) outgrows the 64 KiB initial window,
    // so the server must grant WINDOW_UPDATEs for the call to finish.
    const client = criClient(socket);
    try {
      const reply = await client.unary<{ runtime_name: string }>(client.runtime, 'Version', {
        version: 'v'.repeat(3 * 1024 * 1024),
      });
      expect(reply.runtime_name).toBe('berth');
    } finally {
      client.close();
    }
  });

  it('closes only a connection whose header block cannot be decoded', async () => {
    const bad = await RawH2Connection.open(socket);
    // Index 0 is never valid in HPACK: the connection's compression state is lost.
    bad.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, hpackInt(0, 7, 0x80)));
    await bad.closed();
    const good = await RawH2Connection.open(socket);
    expectBerth(await sendVersion(good, new GoLikeEncoder(), 1, socket));
    good.close();
    expect(gateway.listening()).toBe(true);
  });
});

describe('control: plain grpc-js on a unix socket', () => {
  it('resets a path :authority, or none, with PROTOCOL_ERROR, and answers localhost', async () => {
    for (const authority of [plainSocket, undefined]) {
      const conn = await RawH2Connection.open(plainSocket);
      const reset = await sendVersion(conn, new GoLikeEncoder(), 1, authority);
      expect(reset.rstCode).toBe(PROTOCOL_ERROR);
      expect(reset.data.length).toBe(0);
      conn.close();
    }
    const ok = await RawH2Connection.open(plainSocket);
    expectBerth(await sendVersion(ok, new GoLikeEncoder(), 1, 'localhost'));
    ok.close();
  });
});
