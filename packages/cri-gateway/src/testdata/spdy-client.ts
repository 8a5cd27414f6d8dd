import type { Socket } from 'node:net';
import {
  encodeData,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeSynStream,
  encodeWindowUpdate,
  FLAG_FIN,
  type Frame,
  FrameDecoder,
  RstStatus,
} from '../streaming/spdy-frames.js';
import { SpdyHeaderCodec, type SpdyHeaders } from '../streaming/spdy-headers.js';
import { rawUpgrade, type UpgradeResponse } from './http-upgrade.js';

/** A stream the test client opened. */
export interface ClientStream {
  id: number;
  /** Resolves with everything the server sent, once it half-closed or reset the stream. */
  done: Promise<Buffer>;
  /** True once the server reset the stream. */
  wasReset(): boolean;
  /** Everything received so far. */
  received(): Buffer;
  write(data: string | Buffer, fin?: boolean): Promise<void>;
  end(): Promise<void>;
}

/**
 * A minimal SPDY/3.1 client in the manner of spdystream (what kubectl and crictl use): it opens
 * odd-numbered streams, waits for SYN_REPLY, and does no flow control unless told to
 * (`flowControl: true` makes it send WINDOW_UPDATEs like a SPDY/3.1 browser would).
 */
export class SpdyTestClient {
  readonly response: UpgradeResponse;
  readonly frames: Frame[] = [];
  private readonly codec = new SpdyHeaderCodec();
  private readonly decoder = new FrameDecoder(1 << 24);
  private nextId = 1;
  private chain: Promise<void> = Promise.resolve();
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly streams = new Map<
    number,
    { data: Buffer[]; finish: (b: Buffer) => void; reset: boolean }
  >();
  readonly goaway: Promise<void>;
  readonly closed: Promise<void>;
  private onGoaway: () => void = () => undefined;
  /** Per stream: bytes received but not yet granted back; and the most that ever were. */
  private readonly outstanding = new Map<number, number>();
  maxOutstanding = 0;

  private constructor(
    response: UpgradeResponse,
    private readonly flowControl: boolean,
    private readonly grantBatch: number,
  ) {
    this.response = response;
    this.goaway = new Promise((resolve) => {
      this.onGoaway = resolve;
    });
    const socket = response.socket;
    this.closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('data', (c: Buffer) => this.onBytes(c));
    // Frames already read are handled (header blocks inflate asynchronously) before the close is.
    socket.once('close', () => {
      void this.chain.then(() => {
        for (const s of this.streams.values()) s.finish(Buffer.concat(s.data));
        for (const w of this.waiting.values()) w.reject(new Error('connection closed'));
      });
    });
    if (response.rest.length > 0) this.onBytes(response.rest);
    socket.resume();
  }

  /** Upgrades `url` to SPDY/3.1 offering `protocols`; check `response.status` for a refusal. */
  static async connect(
    url: string,
    protocols: string[],
    opts: { flowControl?: boolean; initialWindow?: number } = {},
  ): Promise<SpdyTestClient> {
    const response = await rawUpgrade(url, [
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      ...protocols.map((p) => `X-Stream-Protocol-Version: ${p}`),
    ]);
    const client = new SpdyTestClient(response, opts.flowControl ?? false, opts.initialWindow ?? 32_768);
    if (opts.initialWindow !== undefined && response.status === 101) {
      // SETTINGS_INITIAL_WINDOW_SIZE (id 7): every stream opened later starts with this window.
      response.socket.write(encodeSettings([{ id: 7, value: opts.initialWindow }]));
    }
    return client;
  }

  get socket(): Socket {
    return this.response.socket;
  }

  /** Opens a stream and waits for the server's SYN_REPLY; rejects if it is reset instead. */
  async open(headers: Record<string, string>, opts: { fin?: boolean } = {}): Promise<ClientStream> {
    const id = this.nextId;
    this.nextId += 2;
    const state = { data: [] as Buffer[], finish: (_b: Buffer): void => undefined, reset: false };
    const done = new Promise<Buffer>((resolve) => {
      state.finish = resolve;
    });
    this.streams.set(id, state);
    const replied = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    const block: SpdyHeaders = Object.fromEntries(
      Object.entries(headers).map(([k, v]) => [k.toLowerCase(), [v]]),
    );
    await this.send(async () =>
      encodeSynStream(id, await this.codec.compress(block), { flags: opts.fin ? FLAG_FIN : 0 }),
    );
    await replied;
    return {
      id,
      done,
      wasReset: () => state.reset,
      received: () => Buffer.concat(state.data),
      write: (data, fin = false) =>
        this.send(() =>
          encodeData(id, typeof data === 'string' ? Buffer.from(data) : data, fin ? FLAG_FIN : 0),
        ),
      end: () => this.send(() => encodeData(id, Buffer.alloc(0), FLAG_FIN)),
    };
  }

  /** Sends a PING and resolves when the server echoes it. */
  async ping(id: number): Promise<void> {
    const seen = this.frames.length;
    await this.send(() => encodePing(id));
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.frames.slice(seen).some((f) => f.kind === 'ping' && f.id === id)) {
          this.socket.off('data', check);
          resolve();
        }
      };
      this.socket.on('data', check);
      check();
    });
  }

  /** Sends raw bytes (for malformed-input tests). */
  raw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  reset(id: number): Promise<void> {
    return this.send(() => encodeRstStream(id, RstStatus.CANCEL));
  }

  close(): void {
    this.codec.close();
    this.socket.destroy();
  }

  private send(make: () => Buffer | Promise<Buffer>): Promise<void> {
    const next = this.chain.then(async () => {
      this.socket.write(await make());
    });
    this.chain = next.catch(() => undefined);
    return next;
  }

  private onBytes(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      this.frames.push(frame);
      // Header blocks must pass through the inflater in order, so handling is chained.
      this.chain = this.chain.then(() => this.onFrame(frame)).catch(() => undefined);
    }
  }

  private async onFrame(frame: Frame): Promise<void> {
    switch (frame.kind) {
      case 'syn_reply': {
        await this.codec.decompress(frame.headerBlock);
        const w = this.waiting.get(frame.streamId);
        this.waiting.delete(frame.streamId);
        w?.resolve();
        if (frame.flags & FLAG_FIN) this.finish(frame.streamId);
        return;
      }
      case 'headers':
        await this.codec.decompress(frame.headerBlock);
        return;
      case 'data': {
        const s = this.streams.get(frame.streamId);
        if (!s) return;
        s.data.push(frame.data);
        const outstanding = (this.outstanding.get(frame.streamId) ?? 0) + frame.data.length;
        this.maxOutstanding = Math.max(this.maxOutstanding, outstanding);
        // A flow-controlling client grants in batches of one window: a server that ignored the
        // window would push `outstanding` past it before the grant.
        if (this.flowControl && outstanding >= this.grantBatch) {
          this.socket.write(
            Buffer.concat([
              encodeWindowUpdate(frame.streamId, outstanding),
              encodeWindowUpdate(0, outstanding),
            ]),
          );
          this.outstanding.set(frame.streamId, 0);
        } else {
          this.outstanding.set(frame.streamId, outstanding);
        }
        if (frame.flags & FLAG_FIN) this.finish(frame.streamId);
        return;
      }
      case 'rst_stream': {
        const s = this.streams.get(frame.streamId);
        if (s) s.reset = true;
        const w = this.waiting.get(frame.streamId);
        this.waiting.delete(frame.streamId);
        w?.reject(new Error(`stream ${frame.streamId} reset with status ${frame.status}`));
        this.finish(frame.streamId);
        return;
      }
      case 'goaway':
        this.onGoaway();
        return;
      default:
        return;
    }
  }

  private finish(id: number): void {
    const s = this.streams.get(id);
    if (s) s.finish(Buffer.concat(s.data));
  }
}
