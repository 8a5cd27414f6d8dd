import { Flag, type Frame, FrameType, framePayload, H2Error, need } from './h2-frames.js';
import { type HeaderField, HpackDecoder } from './hpack.js';

/** A complete header block of one stream, decoded. */
export interface HeaderBlock {
  stream: number;
  /** The HEADERS frame carried END_STREAM. */
  endStream: boolean;
  fields: HeaderField[];
}

/**
 * Gathers a HEADERS frame and its CONTINUATIONs (RFC 9113 section 6.10) and decodes the block
 * with the client's HPACK table. Every block is decoded, even one for a stream the server then
 * refuses, or the table would fall out of step with the client's.
 */
export class HeaderBlockReader {
  private readonly decoder: HpackDecoder;
  private block: { stream: number; flags: number; parts: Buffer[]; size: number } | undefined;

  /** `maxBlock` bounds both the octets buffered and the header list decoded. */
  constructor(private readonly maxBlock: number) {
    this.decoder = new HpackDecoder({ maxTableSize: 4096, maxListSize: maxBlock });
  }

  /**
   * Checks that no frame interrupts a block in progress: between HEADERS without END_HEADERS
   * and its last CONTINUATION, only CONTINUATIONs of the same stream may come.
   */
  check(f: Frame): void {
    const b = this.block;
    if (!b) return;
    need(
      f.type === FrameType.CONTINUATION && f.stream === b.stream,
      H2Error.PROTOCOL_ERROR,
      `header block of stream ${b.stream} interrupted`,
    );
  }

  /** Takes a HEADERS frame; returns the block when it is complete (END_HEADERS). */
  headers(f: Frame): HeaderBlock | undefined {
    need(f.stream !== 0, H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
    const fragment = framePayload(f);
    this.block = { stream: f.stream, flags: f.flags, parts: [fragment], size: 0 };
    return this.add(fragment, f.flags);
  }

  /** Takes a CONTINUATION frame; returns the block when it is complete. */
  continuation(f: Frame): HeaderBlock | undefined {
    need(this.block !== undefined, H2Error.PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
    this.block?.parts.push(f.payload);
    return this.add(f.payload, f.flags);
  }

  private add(fragment: Buffer, flags: number): HeaderBlock | undefined {
    const b = this.block;
    if (!b) return undefined;
    b.size += fragment.length;
    need(b.size <= this.maxBlock, H2Error.ENHANCE_YOUR_CALM, `header block over ${this.maxBlock} octets`);
    if (!(flags & Flag.END_HEADERS)) return undefined;
    this.block = undefined;
    let fields: HeaderField[];
    try {
      fields = this.decoder.decode(b.parts.length === 1 ? (b.parts[0] as Buffer) : Buffer.concat(b.parts));
    } catch (err) {
      // The client's table is now unknown: the connection cannot go on (RFC 9113 section 4.3).
      need(false, H2Error.COMPRESSION_ERROR, (err as Error).message);
      throw err;
    }
    return { stream: b.stream, endStream: (b.flags & Flag.END_STREAM) !== 0, fields };
  }
}
