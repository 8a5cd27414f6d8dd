import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { createLogger } from '@berth/kit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StreamHandler, UnaryHandler } from '../handlers/index.js';
import { CriService, criServiceDefinition } from '../proto.js';
import {
  GoLikeEncoder,
  goHeaders,
  grpcMessage,
  RawH2Connection,
  type ReceivedFrame,
  type StreamResult,
} from '../testdata/raw-h2.js';
import { type BerthCriServer, createBerthCriServer } from './berth-server.js';
import {
  Flag,
  FrameType,
  frame,
  H2Error,
  PREFACE,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from './h2-frames.js';

// berth's HTTP/2 gRPC server on a real unix socket, driven frame by frame by a raw client, with
// handlers the tests control: flow control, deadlines, cancellation, limits, protocol errors.

const runtime = criServiceDefinition(CriService.runtime);
const image = criServiceDefinition(CriService.image);
const VERSION = '/runtime.v1.RuntimeService/Version';
const EVENTS = '/runtime.v1.RuntimeService/GetContainerEvents';
const STATUS = '/runtime.v1.RuntimeService/ContainerStatus';
const LIST_IMAGES = '/runtime.v1.ImageService/ListImages';
const log = createLogger({ service: 'cri-gateway', node: 'test', level: 'silent' });

const body = (path: string, req: unknown): Buffer => {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const def = path.includes('ImageService') ? image[name] : runtime[name];
  if (!def) throw new Error(`no method ${path}`);
  return grpcMessage(def.requestSerialize(req));
};

let root: string;
let socket: string;
let net: Server;
let server: BerthCriServer;
let writes: number[];
let aborted: Promise<string>;
let onAbort: (why: string) => void;
let hold: Promise<unknown>;
let release: (v: unknown) => void;

const handlers: Record<string, UnaryHandler> = {
  'RuntimeService/Version': async () => ({
    version: '0.1.0',
    runtime_name: 'berth',
    runtime_api_version: 'v1',
  }),
  // Waits until the test releases it: a call still in flight.
  'RuntimeService/ContainerStatus': () => hold.then(() => ({ status: { id: 'c1' } })),
  'ImageService/ListImages': async () => ({ images: [{ id: 'x'.repeat(17 * 1024 * 1024) }] }),
  // Answers at once, not in a promise (a reply kept in memory).
  'RuntimeService/ListPodSandbox': () => ({ items: [{ id: 'p1' }] }),
  // Throws before returning a promise.
  'RuntimeService/RuntimeConfig': () => {
    throw new BerthError(Code.NOT_FOUND, 'runtime config "x" not found');
  },
};
const streams: Record<string, StreamHandler> = {
  'RuntimeService/GetContainerEvents': async function* (_req, _deps, signal) {
    yield { container_id: 'first' };
    await new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => {
        onAbort(String(signal.aborted));
        resolve();
      }),
    );
  },
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-h2-'));
  socket = join(root, 'cri.sock');
});

async function start(): Promise<void> {
  writes = [];
  aborted = new Promise((resolve) => {
    onAbort = resolve;
  });
  hold = new Promise((resolve) => {
    release = resolve;
  });
  server = createBerthCriServer({ deps: { log } as never, handlers, streams });
  net = createServer({ allowHalfOpen: true }, (conn: Socket) => {
    // Counts the server's socket writes, to check one write per unary reply.
    const write = conn.write.bind(conn) as (...a: unknown[]) => boolean;
    conn.write = ((...a: unknown[]) => {
      writes.push((a[0] as Buffer).length);
      return write(...a);
    }) as typeof conn.write;
    server.accept(conn);
  });
  await new Promise<void>((resolve) => net.listen(socket, resolve));
}

afterEach(async () => {
  release(undefined);
  await server.close(100);
  await new Promise((resolve) => net.close(resolve));
});
afterAll(() => rm(root, { recursive: true, force: true }));

function request(
  conn: RawH2Connection,
  id: number,
  path: string,
  data: Buffer,
  extra: [string, string][] = [],
) {
  const block = new GoLikeEncoder().encode([
    ...goHeaders(path, socket).filter(([n]) => n !== 'grpc-timeout'),
    ...extra,
  ]);
  conn.write(
    Buffer.concat([
      frame(FrameType.HEADERS, Flag.END_HEADERS, id, block),
      frame(FrameType.DATA, Flag.END_STREAM, id, data),
    ]),
  );
  return conn.result(id);
}

const status = (r: StreamResult) => r.trailers['grpc-status'] ?? r.headers['grpc-status'];
const message = (r: StreamResult) =>
  decodeURIComponent(r.trailers['grpc-message'] ?? r.headers['grpc-message'] ?? '');
const isGoaway = (f: ReceivedFrame) => f.type === FrameType.GOAWAY;

describe("berth's gRPC server", () => {
  it('answers a unary call in one socket write: HEADERS, DATA and trailers', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    await conn.waitFrame((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 1);
    const before = writes.length;
    const r = await request(conn, 1, VERSION, body(VERSION, { version: '0.1.0' }));
    expect(status(r)).toBe('0');
    expect(r.headers[':status']).toBe('200');
    expect(runtime.Version?.responseDeserialize(r.data.subarray(5))).toMatchObject({ runtime_name: 'berth' });
    expect(writes.length - before).toBe(1);
    conn.close();
  });

  it('answers a handler that replies at once (not in a promise) in one write', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    await conn.waitFrame((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 1);
    const before = writes.length;
    const path = '/runtime.v1.RuntimeService/ListPodSandbox';
    const r = await request(conn, 1, path, body(path, {}));
    expect(status(r)).toBe('0');
    expect(runtime.ListPodSandbox?.responseDeserialize(r.data.subarray(5))).toMatchObject({
      items: [{ id: 'p1' }],
    });
    expect(writes.length - before).toBe(1);
    expect(status(await request(conn, 3, VERSION, body(VERSION, {})))).toBe('0');
    conn.close();
  });

  it("acks a Go client's BDP PING in the write of its next request's reply, and alone when none comes", async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    await conn.waitFrame((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 1);
    const acks = () => conn.frames.filter((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) === 1);
    const ping = (n: number) => frame(FrameType.PING, 0, 0, Buffer.alloc(8, n));
    const call = (id: number) =>
      Buffer.concat([
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS,
          id,
          new GoLikeEncoder().encode(goHeaders(VERSION, socket)),
        ),
        frame(FrameType.DATA, Flag.END_STREAM, id, body(VERSION, { version: '0.1.0' })),
      ]);
    let before = writes.length;
    // What grpc-go sends after a reply's DATA (a WINDOW_UPDATE and its BDP PING), then its next
    // call: in one read of the server's, or in two.
    conn.write(Buffer.concat([windowUpdateFrame(0, 30), ping(1), call(1)]));
    expect(status(await conn.result(1))).toBe('0');
    expect(acks().map((f) => f.payload[0])).toEqual([1]);
    expect(writes.length - before).toBe(1);
    before = writes.length;
    conn.write(Buffer.concat([windowUpdateFrame(0, 30), ping(2)]));
    conn.write(call(3));
    expect(status(await conn.result(3))).toBe('0');
    expect(acks().map((f) => f.payload[0])).toEqual([1, 2]);
    expect(writes.length - before).toBe(1);
    // A PING with nothing after it is answered on its own.
    before = writes.length;
    conn.write(ping(3));
    await conn.waitFrame(
      (f) => f.type === FrameType.PING && (f.flags & Flag.ACK) === 1 && f.payload[0] === 3,
    );
    expect(writes.length - before).toBe(1);
    conn.close();
  });

  it('writes a queued PING ack before a RST_STREAM it writes at once, in the same write', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    await conn.waitFrame((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 1);
    const before = writes.length;
    // A PING (its ack waits for the next write) and a PRIORITY of the wrong size: a stream
    // error, answered by a RST_STREAM written at once.
    conn.write(
      Buffer.concat([
        frame(FrameType.PING, 0, 0, Buffer.alloc(8, 7)),
        frame(FrameType.PRIORITY, 0, 1, Buffer.alloc(4)),
      ]),
    );
    await conn.waitFrame((f) => f.type === FrameType.RST_STREAM && f.id === 1);
    const order = conn.frames
      .filter(
        (f) => f.type === FrameType.RST_STREAM || (f.type === FrameType.PING && (f.flags & Flag.ACK) === 1),
      )
      .map((f) => f.type);
    expect(order).toEqual([FrameType.PING, FrameType.RST_STREAM]);
    expect(writes.length - before).toBe(1);
    conn.close();
  });

  it('maps a handler error to its gRPC status, and one thrown before a promise too', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    const path = '/runtime.v1.RuntimeService/RuntimeConfig';
    const r = await request(conn, 1, path, body(path, {}));
    expect(status(r)).toBe('5');
    expect(message(r)).toBe('runtime config "x" not found');
    expect(status(await request(conn, 3, VERSION, body(VERSION, {})))).toBe('0');
    conn.close();
  });

  it('sends no more DATA than the stream window allows, and the rest after WINDOW_UPDATE', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    conn.write(settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 16]]));
    const done = request(conn, 1, VERSION, body(VERSION, { version: '0.1.0' }));
    await conn.waitFrame((f) => f.type === FrameType.DATA && f.id === 1);
    // A PING answered means the server has written all it will write without a window update.
    conn.write(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    await conn.waitFrame((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) === 1);
    const sent = conn.frames.filter((f) => f.type === FrameType.DATA && f.id === 1);
    expect(sent.reduce((n, f) => n + f.payload.length, 0)).toBe(16);
    expect(conn.frames.filter((f) => f.type === FrameType.HEADERS && f.id === 1)).toHaveLength(1);
    conn.write(windowUpdateFrame(1, 1000));
    const r = await done;
    expect(status(r)).toBe('0');
    expect(runtime.Version?.responseDeserialize(r.data.subarray(5))).toMatchObject({ runtime_name: 'berth' });
    conn.close();
  });

  it('starts its next header block with a table size update after the client sets HEADER_TABLE_SIZE', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    conn.write(settingsFrame([[Setting.HEADER_TABLE_SIZE, 0]]));
    expect(status(await request(conn, 1, VERSION, body(VERSION, {})))).toBe('0');
    expect(status(await request(conn, 3, VERSION, body(VERSION, {})))).toBe('0');
    const blocks = conn.frames.filter((f) => f.type === FrameType.HEADERS);
    // RFC 7541 section 4.2: once, at the start of the first block after the change.
    expect(blocks.map((f) => f.payload[0] === 0x20)).toEqual([true, false, false, false]);
    conn.close();
  });

  it('ends a call past its grpc-timeout with DEADLINE_EXCEEDED, aborting a stream handler', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    const unary = await request(conn, 1, STATUS, body(STATUS, { container_id: 'c1' }), [
      ['grpc-timeout', '20m'],
    ]);
    expect(status(unary)).toBe('4');
    expect(message(unary)).toContain('grpc-timeout of 20m');
    const stream = await request(conn, 3, EVENTS, body(EVENTS, {}), [['grpc-timeout', '30m']]);
    expect(status(stream)).toBe('4');
    expect(stream.data.length).toBeGreaterThan(5); // the first event came before the deadline
    expect(await aborted).toBe('true');
    conn.close();
  });

  it('aborts a stream handler when the client resets the stream', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    void request(conn, 1, EVENTS, body(EVENTS, {}));
    await conn.waitFrame((f) => f.type === FrameType.DATA && f.id === 1);
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(H2Error.CANCEL);
    conn.write(frame(FrameType.RST_STREAM, 0, 1, rst));
    expect(await aborted).toBe('true');
    // The connection is still good.
    expect(status(await request(conn, 3, VERSION, body(VERSION, {})))).toBe('0');
    conn.close();
  });

  it('refuses messages over 16 MiB either way with RESOURCE_EXHAUSTED', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(16 * 1024 * 1024 + 1, 1);
    const big = await request(conn, 1, VERSION, head);
    expect(status(big)).toBe('8');
    expect(message(big)).toContain('exceeds the limit');
    const reply = await request(conn, 3, LIST_IMAGES, body(LIST_IMAGES, {}));
    expect(status(reply)).toBe('8');
    expect(message(reply)).toContain('reply of');
    conn.close();
  });

  it('refuses compressed messages, unknown methods and a wrong content-type', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    const compressed = body(VERSION, {});
    compressed[0] = 1;
    expect(status(await request(conn, 1, VERSION, compressed))).toBe('13');
    expect(status(await request(conn, 3, VERSION, compressed, [['grpc-encoding', 'gzip']]))).toBe('12');
    const unknown = await request(conn, 5, '/runtime.v1.RuntimeService/Nope', body(VERSION, {}));
    expect(status(unknown)).toBe('12');
    expect(message(unknown)).toContain('/runtime.v1.RuntimeService/Nope');
    // An RPC of the proto with no handler here.
    expect(status(await request(conn, 7, '/runtime.v1.RuntimeService/Status', body(VERSION, {})))).toBe('12');
    const block = new GoLikeEncoder().encode(
      goHeaders(VERSION, 'localhost').map(
        ([n, v]) => [n, n === 'content-type' ? 'text/plain' : v] as [string, string],
      ),
    );
    conn.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 9, block));
    expect((await conn.result(9)).headers[':status']).toBe('415');
    conn.close();
  });

  it('answers a bad preface and bad frames with GOAWAY and the RFC 9113 error code', async () => {
    await start();
    const cases: [Buffer, number][] = [
      [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), H2Error.PROTOCOL_ERROR],
      [Buffer.concat([PREFACE, frame(FrameType.PING, 0, 0, Buffer.alloc(4))]), H2Error.FRAME_SIZE_ERROR],
      [Buffer.concat([PREFACE, frame(FrameType.DATA, 0, 0, Buffer.alloc(4))]), H2Error.PROTOCOL_ERROR],
      [Buffer.concat([PREFACE, frame(FrameType.DATA, 0, 1, Buffer.alloc(17_000))]), H2Error.FRAME_SIZE_ERROR],
      [
        Buffer.concat([PREFACE, frame(FrameType.HEADERS, Flag.END_HEADERS, 2, Buffer.of(0x83))]),
        H2Error.PROTOCOL_ERROR,
      ],
      // HEADERS without END_HEADERS, then a frame that is not its CONTINUATION.
      [
        Buffer.concat([
          PREFACE,
          frame(FrameType.HEADERS, 0, 1, Buffer.of(0x83)),
          frame(FrameType.PING, 0, 0, Buffer.alloc(8)),
        ]),
        H2Error.PROTOCOL_ERROR,
      ],
      [
        Buffer.concat([PREFACE, frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.alloc(4))]),
        H2Error.PROTOCOL_ERROR,
      ],
      [Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(5))]), H2Error.FRAME_SIZE_ERROR],
    ];
    for (const [bytes, code] of cases) {
      const c = connect(socket);
      const got: Buffer[] = [];
      c.on('data', (b: Buffer) => got.push(b));
      c.write(bytes);
      await new Promise((resolve) => c.once('close', resolve));
      const all = Buffer.concat(got);
      const frames = parseFrames(all);
      const goaway = frames.find(isGoaway);
      expect(goaway?.payload.readUInt32BE(4), `case ${bytes.subarray(24, 33).toString('hex')}`).toBe(code);
    }
  });

  it('closes gracefully: GOAWAY names the last stream, which still gets its reply', async () => {
    await start();
    const conn = await RawH2Connection.open(socket);
    const inFlight = request(conn, 1, STATUS, body(STATUS, { container_id: 'c1' }));
    // Frames are handled in order: once the PING is answered, stream 1 is open on the server.
    conn.write(frame(FrameType.PING, 0, 0, Buffer.alloc(8)));
    await conn.waitFrame((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) === 1);
    const closing = server.close(5000);
    const goaway = await conn.waitFrame(isGoaway);
    expect(goaway.payload.readUInt32BE(0)).toBe(1);
    expect(goaway.payload.readUInt32BE(4)).toBe(H2Error.NO_ERROR);
    // A stream opened after GOAWAY is refused, for the client to retry elsewhere.
    expect((await request(conn, 3, VERSION, body(VERSION, {}))).rstCode).toBe(H2Error.REFUSED_STREAM);
    release(undefined);
    expect(status(await inFlight)).toBe('0');
    await closing;
    await conn.closed();
  });
});

function parseFrames(buf: Buffer): ReceivedFrame[] {
  const out: ReceivedFrame[] = [];
  for (let pos = 0; buf.length - pos >= 9; ) {
    const length = buf.readUIntBE(pos, 3);
    out.push({
      type: buf[pos + 3] ?? 0,
      flags: buf[pos + 4] ?? 0,
      id: buf.readUInt32BE(pos + 5),
      payload: buf.subarray(pos + 9, pos + 9 + length),
    });
    pos += 9 + length;
  }
  return out;
}
