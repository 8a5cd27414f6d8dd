import { type BerthError, grpcStatusOf } from '@berth/api';
import type { H2Stream } from './h2-stream.js';
import { encodeHeaderBlock, type HeaderField } from './hpack.js';

// The gRPC-over-HTTP/2 wire details (grpc's PROTOCOL-HTTP2.md) that do not depend on a call:
// header blocks the server sends, the message prefix, and the request headers it reads.

/** Largest message either way, as containerd's CRI (16 MiB); grpc-js defaults to 4 MiB. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Octets before each message: a compressed flag and a 32-bit length. */
export const MESSAGE_PREFIX = 5;

const field = (name: string, value: string): HeaderField => ({ name, value, sensitive: false });
const STATUS_200 = field(':status', '200');
const CONTENT_TYPE = field('content-type', 'application/grpc+proto');

/** The response headers of every call: the same octets each time, encoded once. */
const RESPONSE_HEADERS = encodeHeaderBlock([STATUS_200, CONTENT_TYPE]);
/** The trailers of a call that ended OK. */
const OK_TRAILERS = encodeHeaderBlock([field('grpc-status', '0')]);

/** A serialized message with its gRPC prefix (uncompressed), in one buffer. */
export function grpcFrame(body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(MESSAGE_PREFIX + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  body.copy(out, MESSAGE_PREFIX);
  return out;
}

/** Queues the response headers on `stream`. */
export function sendResponseHeaders(stream: H2Stream): void {
  stream.sendHeaders(RESPONSE_HEADERS, false);
}

/** Queues the trailers ending a call OK. */
export function sendOkTrailers(stream: H2Stream): void {
  stream.sendHeaders(OK_TRAILERS, true);
}

/**
 * Queues the status ending a call with `err`: as trailers after headers already sent, or as a
 * "Trailers-Only" response (status, content-type and grpc-status in one block) when none were.
 */
export function sendErrorStatus(stream: H2Stream, err: BerthError, headersSent: boolean): void {
  const status = [
    field('grpc-status', String(grpcStatusOf[err.code])),
    field('grpc-message', percentEncode(err.message)),
  ];
  const block = encodeHeaderBlock(headersSent ? status : [STATUS_200, CONTENT_TYPE, ...status]);
  stream.sendHeaders(block, true);
}

/**
 * Answers a request that is not gRPC at all with an HTTP status (grpc's spec: 415 for a wrong
 * content-type), plus a grpc-status for clients that look only at that.
 */
export function sendHttpError(
  stream: H2Stream,
  httpStatus: number,
  grpcStatus: number,
  message: string,
): void {
  const block = encodeHeaderBlock([
    field(':status', String(httpStatus)),
    field('content-type', 'application/grpc'),
    field('grpc-status', String(grpcStatus)),
    field('grpc-message', percentEncode(message)),
  ]);
  stream.sendHeaders(block, true);
}

// Octets grpc-message may carry as they are (PROTOCOL-HTTP2.md: printable ASCII except '%').
const PLAIN = /^[\x20-\x24\x26-\x7e]*$/;

/** Percent-encodes a status message's UTF-8 octets as grpc-message requires. */
export function percentEncode(message: string): string {
  if (PLAIN.test(message)) return message;
  let out = '';
  for (const c of Buffer.from(message, 'utf8')) {
    out +=
      c >= 0x20 && c <= 0x7e && c !== 0x25
        ? String.fromCharCode(c)
        : `%${c.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 } as const;

/**
 * The deadline a grpc-timeout header asks for, in ms from now (at most 8 digits and a unit,
 * PROTOCOL-HTTP2.md); undefined for a malformed one.
 */
export function parseTimeout(value: string): number | undefined {
  const m = TIMEOUT.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** The request headers a call uses, picked out of the block in one pass. */
export interface RequestHead {
  method: string | undefined;
  path: string | undefined;
  contentType: string | undefined;
  timeout: string | undefined;
  encoding: string | undefined;
}

/** Reads the request headers a call needs. */
export function requestHead(headers: readonly HeaderField[]): RequestHead {
  const h: RequestHead = {
    method: undefined,
    path: undefined,
    contentType: undefined,
    timeout: undefined,
    encoding: undefined,
  };
  for (const f of headers) {
    if (f.name === ':method') h.method = f.value;
    else if (f.name === ':path') h.path = f.value;
    else if (f.name === 'content-type') h.contentType = f.value;
    else if (f.name === 'grpc-timeout') h.timeout = f.value;
    else if (f.name === 'grpc-encoding') h.encoding = f.value;
  }
  return h;
}
