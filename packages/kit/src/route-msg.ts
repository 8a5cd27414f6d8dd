// The message a same-node route hands a callee, and what its caller gets back (local-route.ts,
// socket-route.ts): what the kit's NATS request path reads of a message and of a reply.
import type { MsgHdrs } from 'nats';

/** A request handed to a callee past NATS: what its NATS handler reads of a message. */
export interface LocalMsg {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
  /**
   * Set (to a name of the route's own) when the caller asked for heartbeats (heartbeat.ts): a
   * socket's caller of a long operation, so a callee that froze is told from a slow one.
   */
  readonly reply: string | undefined;
  /** How it came, not over NATS (the callee's access line says so). */
  readonly via: 'process' | 'socket';
  /** The reply; or, with HEARTBEAT_HEADER in `opts.headers`, a heartbeat (not an answer). */
  respond(data?: Uint8Array, opts?: { headers?: MsgHdrs }): boolean;
  respondError(code: number, description: string, data?: Uint8Array): boolean;
}

/** What a caller gets back: the reply's bytes and headers, as a NATS reply message has them. */
export interface LocalReply {
  readonly data: Uint8Array;
  readonly headers?: MsgHdrs | undefined;
}
