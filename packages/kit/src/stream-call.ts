import { type InputOf, type OpName, type ServiceDef, StreamEnd } from '@berth/api';
import type { NatsConnection } from 'nats';
import { type CallOptions, call } from './client.js';
import { type NatsStream, openStream, type StreamOptions } from './stream.js';

/** The input of an operation that opens a stream, without the `stream` field the call fills in. */
export type StreamInputOf<S extends ServiceDef, K extends OpName<S>> = Omit<InputOf<S, K>, 'stream'>;

/**
 * Calls an operation that opens a stream (its input has `stream`, its output is the producer's
 * StreamEnd): opens this end first, so no frame is missed, sends the request and connects to the
 * producer's end. Errors before the stream exists are the call's own (NOT_FOUND, UNAVAILABLE...).
 */
export async function callStream<S extends ServiceDef, K extends OpName<S>>(
  nc: NatsConnection,
  service: S,
  op: K,
  input: StreamInputOf<S, K>,
  opts: CallOptions & StreamOptions,
): Promise<NatsStream> {
  const s = openStream(nc, opts);
  try {
    const reply = await call(nc, service, op, { ...input, stream: s.local } as InputOf<S, K>, opts);
    s.connect(StreamEnd.parse(reply));
    return s;
  } catch (err) {
    s.close();
    throw err;
  }
}
