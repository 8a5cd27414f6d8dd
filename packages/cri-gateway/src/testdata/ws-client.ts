import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { encodeWsFrame } from '../streaming/websocket.js';
import { rawUpgrade, type UpgradeResponse } from './http-upgrade.js';

/** A message the server sent. */
export interface WsMessage {
  binary: boolean;
  data: Buffer;
}

/**
 * A minimal RFC 6455 client: checks Sec-WebSocket-Accept, masks what it sends, reassembles what
 * it receives, answers nothing but records pongs and the close code.
 */
export class WsTestClient {
  readonly messages: WsMessage[] = [];
  closeCode: number | undefined;
  readonly closed: Promise<void>;
  private buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentBinary = true;
  private listeners: (() => void)[] = [];

  private constructor(readonly response: UpgradeResponse) {
    const socket = response.socket;
    this.closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('data', (c: Buffer) => this.onBytes(c));
    socket.once('close', () => this.notify());
    if (response.rest.length > 0) this.onBytes(response.rest);
    socket.resume();
  }

  /** Upgrades `url` to WebSocket offering `protocols`; check `response.status` for a refusal. */
  static async connect(url: string, protocols: string[]): Promise<WsTestClient> {
    const key = randomBytes(16).toString('base64');
    const response = await rawUpgrade(url, [
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Key: ${key}`,
      ...(protocols.length > 0 ? [`Sec-WebSocket-Protocol: ${protocols.join(', ')}`] : []),
    ]);
    if (response.status === 101) {
      const want = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      if (response.headers['sec-websocket-accept'] !== want) throw new Error('bad Sec-WebSocket-Accept');
    }
    return new WsTestClient(response);
  }

  get socket(): Socket {
    return this.response.socket;
  }

  /** Sends one masked message (binary unless told otherwise). */
  send(data: Buffer, binary = true): void {
    this.socket.write(encodeWsFrame(binary ? 2 : 1, data, randomBytes(4)));
  }

  /** Sends a masked frame with any opcode and fin bit (for fragmentation and control tests). */
  sendFrame(opcode: number, data: Buffer, fin = true): void {
    const frame = encodeWsFrame(opcode, data, randomBytes(4));
    if (!fin) frame[0] = (frame[0] ?? 0) & 0x7f;
    this.socket.write(frame);
  }

  /** Resolves once a message matching `pred` has arrived (or rejects when the connection closes). */
  waitFor(pred: (m: WsMessage) => boolean): Promise<WsMessage> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.messages.find(pred);
        if (found) {
          this.listeners = this.listeners.filter((l) => l !== check);
          resolve(found);
        } else if (this.socket.destroyed) reject(new Error('connection closed'));
      };
      this.listeners.push(check);
      check();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  private onBytes(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) break;
      let len = (b[1] ?? 0) & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if ((b[1] ?? 0) & 0x80) throw new Error('server frames must not be masked');
      if (b.length < at + len) break;
      const fin = ((b[0] ?? 0) & 0x80) !== 0;
      const opcode = (b[0] ?? 0) & 0x0f;
      const payload = Buffer.from(b.subarray(at, at + len));
      this.buffer = b.subarray(at + len);
      if (opcode === 8) {
        this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      } else if (opcode === 1 || opcode === 2 || opcode === 0) {
        if (opcode !== 0) this.fragmentBinary = opcode === 2;
        this.fragments.push(payload);
        if (fin) {
          this.messages.push({ binary: this.fragmentBinary, data: Buffer.concat(this.fragments) });
          this.fragments = [];
        }
      } else if (opcode === 10) {
        this.messages.push({ binary: false, data: Buffer.concat([Buffer.from('pong:'), payload]) });
      }
    }
    this.notify();
  }
}
