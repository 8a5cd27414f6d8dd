import { BerthError, Code } from '@berth/api';
import { encodeHeaderBlock, type HeaderField, HpackDecoder } from './hpack.js';

// Go gRPC clients (crictl, critest, kubelet <= 1.25) dialling unix://<path> send the socket's path
// as :authority. nghttp2, under Node's HTTP/2 server, resets any stream whose authority holds a
// character RFC 3986 does not allow ('/'), before grpc-js sees it, and neither Node nor grpc-js
// can turn that check off. So the bytes a client sends pass through this rewriter first: it
// forwards every frame as is, except header blocks, which it decodes with the client's HPACK
// state and re-encodes with an invalid authority replaced. The re-encoding never adds to the
// server's dynamic table, so the two HPACK contexts cannot drift apart; HEADERS and CONTINUATION
// are not flow-controlled, so windows are untouched.

/** The authority a path-like one is replaced with: what newer kubelets send for a unix socket. */
export const LOCAL_AUTHORITY = 'localhost';

/** The client connection preface (RFC 9113 section 3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const FRAME_HEADER = 9;
const HEADERS = 0x1;
const PUSH_PROMISE = 0x5;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;

/** Largest frame payload every HTTP/2 peer must accept (SETTINGS_MAX_FRAME_SIZE's floor). */
const MIN_MAX_FRAME = 16_384;

/**
 * Characters RFC 3986 allows in an authority (userinfo@host:port, IP literals, %-escapes). An
 * empty one is refused too: nghttp2 resets it, and an http URI must name a host.
 */
const AUTHORITY = /^[A-Za-z0-9\-._~%!$&'()*+,;=:@[\]]+$/;

/** Whether `value` is a non-empty authority made of the characters nghttp2 accepts. */
export function isValidAuthority(value: string): boolean {
  return AUTHORITY.test(value);
}

/**
 * Makes a request's authority one nghttp2 accepts: an :authority (or host) that is not an
 * authority, such as a socket path, becomes localhost; a request with neither gets :authority
 * localhost, since RFC 9113 lets a client with no authority to convey (a unix socket) omit it,
 * while nghttp2 resets such a stream. Returns whether anything changed. Trailers (no :method) are
 * left alone.
 */
export function fixAuthority(fields: HeaderField[]): boolean {
  let changed = false;
  let request = false;
  let named = false;
  for (const f of fields) {
    if (f.name === ':method') request = true;
    if (f.name === ':authority' || f.name === 'host') {
      named = true;
      if (!isValidAuthority(f.value)) {
        f.value = LOCAL_AUTHORITY;
        changed = true;
      }
    }
  }
  if (request && !named) {
    fields.unshift({ name: ':authority', value: LOCAL_AUTHORITY, sensitive: false });
    changed = true;
  }
  return changed;
}

/** Limits that keep one connection's buffering bounded. */
export interface RewriterLimits {
  /** Largest dynamic table the client may use: the server's SETTINGS_HEADER_TABLE_SIZE or more. */
  maxTableSize: number;
  /** Largest header block (all its fragments) buffered before it is decoded. */
  maxBlockSize: number;
  /** Largest header list one block may decode to. */
  maxListSize: number;
}

/** Defaults: Node's HTTP/2 server announces a 4 KiB table; gRPC metadata is far below these. */
export const DEFAULT_LIMITS: RewriterLimits = {
  maxTableSize: 65_536,
  maxBlockSize: 256 * 1024,
  maxListSize: 256 * 1024,
};

/** A header frame whose payload is still arriving (allocated only if it spans chunks). */
interface Collecting {
  type: number;
  flags: number;
  streamId: number;
  length: number;
  payload: Buffer | undefined;
  fill: number;
}

interface Block {
  streamId: number;
  flags: number;
  priority: Buffer | undefined;
  fragments: Buffer[];
  size: number;
}

function protocol(message: string): BerthError {
  return new BerthError(Code.INVALID_ARGUMENT, `HTTP/2 client ${message}`);
}

/**
 * Rewrites the client-to-server half of one HTTP/2 connection: feed it the bytes in the order they
 * arrive, forward what it returns. Anything but an HTTP/2 preface is passed through untouched (the
 * server rejects it). Throws a BerthError on a header block it cannot decode; the connection
 * cannot continue after that, since the HPACK state is lost.
 */
export class AuthorityRewriter {
  private readonly decoder: HpackDecoder;
  private prefaceSeen = 0;
  private opaque = false;
  private readonly header = Buffer.alloc(FRAME_HEADER);
  private headerFill = 0;
  private passLeft = 0;
  private collect: Collecting | undefined;
  private block: Block | undefined;
  /** How many header blocks had their authority replaced. */
  rewritten = 0;

  constructor(private readonly limits: RewriterLimits = DEFAULT_LIMITS) {
    this.decoder = new HpackDecoder(limits);
  }

  /** Consumes the next bytes from the client; returns the bytes to hand to the server. */
  push(chunk: Buffer): Buffer[] {
    if (this.opaque) return [chunk];
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (this.prefaceSeen < PREFACE.length) {
        const n = Math.min(PREFACE.length - this.prefaceSeen, chunk.length - pos);
        if (!chunk.subarray(pos, pos + n).equals(PREFACE.subarray(this.prefaceSeen, this.prefaceSeen + n))) {
          this.opaque = true;
          out.push(chunk.subarray(pos));
          return out;
        }
        out.push(chunk.subarray(pos, pos + n));
        this.prefaceSeen += n;
        pos += n;
      } else if (this.passLeft > 0) {
        const n = Math.min(this.passLeft, chunk.length - pos);
        out.push(chunk.subarray(pos, pos + n));
        this.passLeft -= n;
        pos += n;
      } else if (this.collect) {
        const c = this.collect;
        c.payload ??= Buffer.allocUnsafe(c.length);
        const n = Math.min(c.length - c.fill, chunk.length - pos);
        chunk.copy(c.payload, c.fill, pos, pos + n);
        c.fill += n;
        pos += n;
        if (c.fill === c.length) {
          this.collect = undefined;
          this.headerFrame(c.type, c.flags, c.streamId, c.payload, out);
        }
      } else {
        let head: Buffer;
        if (this.headerFill === 0 && chunk.length - pos >= FRAME_HEADER) {
          head = chunk.subarray(pos, pos + FRAME_HEADER);
          pos += FRAME_HEADER;
        } else {
          const n = Math.min(FRAME_HEADER - this.headerFill, chunk.length - pos);
          chunk.copy(this.header, this.headerFill, pos, pos + n);
          this.headerFill += n;
          pos += n;
          if (this.headerFill < FRAME_HEADER) continue;
          this.headerFill = 0;
          head = Buffer.from(this.header);
        }
        const length = this.frameHeader(head, out);
        // A header frame already whole in this chunk is read in place, without a copy.
        // frameHeader may have just set it (TypeScript still narrows it to undefined here).
        const c = this.collect as Collecting | undefined;
        if (c && chunk.length - pos >= length) {
          this.collect = undefined;
          this.headerFrame(c.type, c.flags, c.streamId, chunk.subarray(pos, pos + length), out);
          pos += length;
        }
      }
    }
    return out;
  }

  /** Handles a complete frame header; returns the payload length, and collects header frames. */
  private frameHeader(head: Buffer, out: Buffer[]): number {
    const length = head.readUIntBE(0, 3);
    const type = head[3] ?? 0;
    const flags = head[4] ?? 0;
    const streamId = head.readUInt32BE(5) & 0x7fffffff;
    if (type === HEADERS || type === CONTINUATION) {
      if ((type === CONTINUATION) !== (this.block !== undefined)) {
        throw protocol(`sent a ${type === HEADERS ? 'HEADERS' : 'CONTINUATION'} frame out of sequence`);
      }
      if (this.block && this.block.streamId !== streamId) {
        throw protocol(
          `sent a CONTINUATION for stream ${streamId} inside stream ${this.block.streamId}'s headers`,
        );
      }
      if ((this.block?.size ?? 0) + length > this.limits.maxBlockSize) {
        throw protocol(`sent a header block larger than ${this.limits.maxBlockSize} octets`);
      }
      this.collect = { type, flags, streamId, length, payload: undefined, fill: 0 };
      return length;
    }
    if (this.block)
      throw protocol(`sent a frame of type ${type} inside stream ${this.block.streamId}'s headers`);
    if (type === PUSH_PROMISE) throw protocol('sent PUSH_PROMISE, which only servers may send');
    out.push(head);
    this.passLeft = length;
    return length;
  }

  private headerFrame(type: number, flags: number, streamId: number, payload: Buffer, out: Buffer[]): void {
    if (type === HEADERS) {
      let start = 0;
      let end = payload.length;
      if (flags & PADDED) {
        start = 1;
        end -= payload[0] ?? 0;
      }
      const priority = flags & PRIORITY ? payload.subarray(start, start + 5) : undefined;
      if (priority) start += 5;
      if (end < start) throw protocol(`sent a HEADERS frame on stream ${streamId} with too much padding`);
      const fragment = payload.subarray(start, end);
      this.block = { streamId, flags, priority, fragments: [fragment], size: fragment.length };
    } else if (this.block) {
      this.block.fragments.push(payload);
      this.block.size += payload.length;
    }
    if (!(flags & END_HEADERS) || !this.block) return;
    const block = this.block;
    this.block = undefined;
    const whole =
      block.fragments.length === 1
        ? (block.fragments[0] as Buffer)
        : Buffer.concat(block.fragments, block.size);
    const fields = this.decoder.decode(whole);
    if (fixAuthority(fields)) this.rewritten++;
    frameBlock(block, encodeHeaderBlock(fields), out);
  }
}

/** Frames a re-encoded block as HEADERS (plus CONTINUATIONs if it outgrows one frame). */
function frameBlock(block: Block, encoded: Buffer, out: Buffer[]): void {
  const prefix = block.priority?.length ?? 0;
  const frames = Math.max(1, Math.ceil((encoded.length + prefix) / MIN_MAX_FRAME));
  const bytes = Buffer.allocUnsafe(frames * FRAME_HEADER + prefix + encoded.length);
  let at = 0;
  let pos = 0;
  for (let i = 0; i < frames; i++) {
    const first = i === 0;
    const room = MIN_MAX_FRAME - (first ? prefix : 0);
    const n = Math.min(room, encoded.length - pos);
    let flags = i === frames - 1 ? END_HEADERS : 0;
    if (first) flags |= (block.flags & END_STREAM) | (block.priority ? PRIORITY : 0);
    bytes.writeUIntBE(n + (first ? prefix : 0), at, 3);
    bytes[at + 3] = first ? HEADERS : CONTINUATION;
    bytes[at + 4] = flags;
    bytes.writeUInt32BE(block.streamId, at + 5);
    at += FRAME_HEADER;
    if (first && block.priority) at += block.priority.copy(bytes, at);
    at += encoded.copy(bytes, at, pos, pos + n);
    pos += n;
  }
  out.push(bytes);
}
