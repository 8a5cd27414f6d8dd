import { DEFAULT_MAX_FRAME, H2ConnectionError, H2Error, MAX_WINDOW, Setting } from './h2-frames.js';

/** Limits the server announces and enforces on each connection. */
export interface ServerLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams one client may have open at once. */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE, also the largest header block buffered before decoding. */
  maxHeaderListSize: number;
}

/** Defaults: kubelet keeps a few dozen calls in flight; gRPC metadata is a few hundred octets. */
export const DEFAULT_LIMITS: ServerLimits = { maxConcurrentStreams: 1000, maxHeaderListSize: 65_536 };

/**
 * The receive windows the server grants. A stream's 1 MiB lets a typical request arrive in one
 * round trip; the connection's 16 MiB covers a largest message. Both are topped up as the
 * octets arrive (half spent -> back to full), since a request is buffered whole and its size
 * is bounded by the call (16 MiB).
 */
export const RECV_WINDOW = { stream: 1024 * 1024, connection: 16 * 1024 * 1024 } as const;

/** The server's SETTINGS: push off, its windows and limits; frame size stays at the default. */
export function SERVER_SETTINGS(limits: ServerLimits): [number, number][] {
  return [
    [Setting.ENABLE_PUSH, 0],
    [Setting.MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
    [Setting.INITIAL_WINDOW_SIZE, RECV_WINDOW.stream],
    [Setting.MAX_HEADER_LIST_SIZE, limits.maxHeaderListSize],
  ];
}

/** What the server keeps of a client's SETTINGS. */
export interface PeerSettings {
  /** SETTINGS_INITIAL_WINDOW_SIZE: each new stream's send window. */
  initialWindow: number;
  /** SETTINGS_MAX_FRAME_SIZE: the largest frame payload the client accepts. */
  maxFrame: number;
  /** The SETTINGS carried SETTINGS_HEADER_TABLE_SIZE. */
  tableSize?: boolean;
}

/**
 * Applies a client's SETTINGS payload to `current`, checking each value as RFC 9113 section
 * 6.5.2 requires; unknown identifiers are ignored. Throws the connection error a bad one is.
 */
export function applyPeerSettings(payload: Buffer, current: PeerSettings): PeerSettings {
  if (payload.length % 6 !== 0) {
    throw new H2ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS length is not a multiple of 6');
  }
  const next = { ...current };
  for (let at = 0; at < payload.length; at += 6) {
    const id = payload.readUInt16BE(at);
    const value = payload.readUInt32BE(at + 2);
    if (id === Setting.INITIAL_WINDOW_SIZE) {
      if (value > MAX_WINDOW) {
        throw new H2ConnectionError(
          H2Error.FLOW_CONTROL_ERROR,
          `SETTINGS_INITIAL_WINDOW_SIZE ${value} above 2^31-1`,
        );
      }
      next.initialWindow = value;
    } else if (id === Setting.MAX_FRAME_SIZE) {
      if (value < DEFAULT_MAX_FRAME || value > 0xff_ffff) {
        throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} out of range`);
      }
      next.maxFrame = value;
    } else if (id === Setting.HEADER_TABLE_SIZE) {
      next.tableSize = true;
    } else if (id === Setting.ENABLE_PUSH && value > 1) {
      throw new H2ConnectionError(H2Error.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value} is not 0 or 1`);
    }
  }
  return next;
}
