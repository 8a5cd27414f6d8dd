import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { adoptUpgradedSocket } from './upgraded-socket.js';

/** RFC 6455 section 1.3: the GUID appended to the client's key for Sec-WebSocket-Accept. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Largest message accepted from a client; a larger one closes the connection with 1009. */
const MAX_MESSAGE = 16 * 1024 * 1024;

const Opcode = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/** The outcome of checking a WebSocket upgrade request against the subprotocols a route serves. */
export type WebSocketHandshake =
  | { ok: true; protocol: string; response: string }
  | { ok: false; status: number; message: string; headers?: Record<string, string> };

/** True if the request asks to upgrade to WebSocket (Upgrade: websocket, Connection: upgrade). */
export function isWebSocketRequest(req: IncomingMessage): boolean {
  const upgrade = (req.headers.upgrade ?? '').toLowerCase();
  const connection = (req.headers.connection ?? '').toLowerCase();
  return upgrade === 'websocket' && connection.split(',').some((t) => t.trim() === 'upgrade');
}

/**
 * Checks an upgrade request and picks a subprotocol: the first the client offers that `supported`
 * holds; with none offered, '' if `supported` holds it. Builds the 101 response on success.
 */
export function webSocketHandshake(req: IncomingMessage, supported: readonly string[]): WebSocketHandshake {
  if (req.headers['sec-websocket-version'] !== '13') {
    return {
      ok: false,
      status: 426,
      message: `unsupported Sec-WebSocket-Version "${req.headers['sec-websocket-version'] ?? ''}", want 13`,
      headers: { 'Sec-WebSocket-Version': '13' },
    };
  }
  const key = req.headers['sec-websocket-key'];
  if (typeof key !== 'string' || Buffer.from(key, 'base64').length !== 16) {
    return { ok: false, status: 400, message: 'Sec-WebSocket-Key must be 16 bytes in base64' };
  }
  const offered = (req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  const protocol =
    offered.length === 0
      ? supported.includes('')
        ? ''
        : undefined
      : offered.find((p) => supported.includes(p));
  if (protocol === undefined) {
    return {
      ok: false,
      status: 403,
      message: `unable to upgrade: requested subprotocols [${offered.join(', ')}] are not supported; supports [${supported.filter((p) => p).join(', ')}]`,
    };
  }
  const accept = createHash('sha1')
    .update(key + ACCEPT_GUID)
    .digest('base64');
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${accept}`,
  ];
  if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  return { ok: true, protocol, response: `${lines.join('\r\n')}\r\n\r\n` };
}

/** Encodes one unmasked (server-to-client) frame. */
export function encodeWsFrame(opcode: number, payload: Buffer, mask?: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.alloc(2) : len < 65_536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (len < 126) head[1] = len;
  else if (len < 65_536) {
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  head[1] = (head[1] ?? 0) | 0x80;
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] ?? 0) ^ (mask[i % 4] ?? 0);
  return Buffer.concat([head, mask, masked]);
}

/**
 * The server side of an RFC 6455 connection after the handshake: reassembles client messages
 * (which must be masked), answers pings, and closes cleanly. Emits 'message' (data, binary).
 */
export class WebSocketConnection extends EventEmitter {
  private buffer: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentBytes = 0;
  private fragmentBinary = true;
  private closeSent = false;
  private failed = false;
  private readonly abort = new AbortController();
  /** Resolves when the TCP connection is gone. */
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: Duplex,
    idleTimeoutMs: number,
  ) {
    super();
    this.closed = adoptUpgradedSocket(
      socket,
      idleTimeoutMs,
      (chunk) => this.onBytes(chunk),
      () => this.abort.abort(new Error('WebSocket connection closed')),
    );
  }

  /** Aborts when the connection closes. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Feeds bytes read before the connection took the socket. */
  feed(head: Buffer): void {
    if (head.length > 0) this.onBytes(head);
  }

  /** Sends one message; resolves when the socket accepted it (waiting out backpressure). */
  async send(data: Buffer, binary = true): Promise<void> {
    if (this.closeSent || this.socket.destroyed) throw new Error('WebSocket connection is closed');
    if (!this.socket.write(encodeWsFrame(binary ? Opcode.BINARY : Opcode.TEXT, data))) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.on('drain', done);
        this.socket.on('close', done);
      });
    }
  }

  /** Stops reading the client (TCP pushes back) until resume(); for input nobody consumes yet. */
  pause(): void {
    this.socket.pause();
  }

  /** Reads the client again after pause(). */
  resume(): void {
    this.socket.resume();
  }

  /** Sends a close frame and ends the TCP connection after it. */
  close(code = 1000, reason = ''): void {
    if (this.closeSent || this.socket.destroyed) return;
    this.closeSent = true;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    this.socket.end(encodeWsFrame(Opcode.CLOSE, payload));
    setTimeout(() => this.socket.destroy(), 5_000).unref();
  }

  private onBytes(chunk: Buffer): void {
    if (this.failed) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (!this.socket.destroyed && !this.failed) {
      const frame = this.nextFrame();
      if (!frame) return;
      this.onFrame(frame.fin, frame.opcode, frame.payload);
    }
  }

  private nextFrame(): { fin: boolean; opcode: number; payload: Buffer } | undefined {
    const b = this.buffer;
    if (b.length < 2) return undefined;
    const b0 = b[0] ?? 0;
    const b1 = b[1] ?? 0;
    if (b0 & 0x70) return this.fail(1002, 'reserved bits set without a negotiated extension');
    if (!(b1 & 0x80)) return this.fail(1002, 'client frames must be masked');
    let len = b1 & 0x7f;
    let at = 2;
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = b.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(MAX_MESSAGE)) return this.fail(1009, 'message too big');
      len = Number(big);
      at = 10;
    }
    if (len > MAX_MESSAGE) return this.fail(1009, 'message too big');
    if (b.length < at + 4 + len) return undefined;
    const mask = b.subarray(at, at + 4);
    const payload = Buffer.from(b.subarray(at + 4, at + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
    this.buffer = b.subarray(at + 4 + len);
    return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload };
  }

  private onFrame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode >= 8) {
      if (!fin || payload.length > 125) return void this.fail(1002, 'control frames must be whole and short');
      if (opcode === Opcode.PING && !this.closeSent) this.socket.write(encodeWsFrame(Opcode.PONG, payload));
      if (opcode === Opcode.CLOSE) {
        this.close(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
        this.emit('peerClose');
      }
      return;
    }
    if (opcode === Opcode.CONTINUATION) {
      if (this.fragments.length === 0) return void this.fail(1002, 'continuation without a message');
    } else if (opcode === Opcode.TEXT || opcode === Opcode.BINARY) {
      if (this.fragments.length > 0) return void this.fail(1002, 'new message inside a fragmented one');
      this.fragmentBinary = opcode === Opcode.BINARY;
    } else {
      return void this.fail(1002, `unknown opcode ${opcode}`);
    }
    this.fragments.push(payload);
    this.fragmentBytes += payload.length;
    if (this.fragmentBytes > MAX_MESSAGE) return void this.fail(1009, 'message too big');
    if (!fin) return;
    const message = Buffer.concat(this.fragments);
    this.fragments = [];
    this.fragmentBytes = 0;
    this.emit('message', message, this.fragmentBinary);
  }

  /** Closes on a protocol violation; nothing more from this client is read. */
  private fail(code: number, reason: string): undefined {
    this.failed = true;
    this.buffer = Buffer.alloc(0);
    this.close(code, reason);
    return undefined;
  }
}
