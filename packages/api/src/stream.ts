// Contracts of the byte streams berth runs over core NATS (a container's log, an attach session):
// how the two ends find each other. The frame protocol itself (sequence numbers, credit-based
// acks, end/error frames, heartbeats) is implemented once, in @berth/kit's stream module.
//
// Opening: the reader subscribes to an inbox of its own and sends the operation (e.g. the shim's
// `logs` or `attach`) with `stream: { inbox, window }`. The producer checks the request, opens its
// own inbox and answers `{ inbox, window }`; from then on each end sends frames to the other's
// inbox, never more unacknowledged data frames than the other's window. A failure before the
// answer is an ordinary error reply; after it, an error frame.
import * as z from './lazy-zod.js';

/**
 * A NATS inbox subject (`_INBOX.<id>`, or a connection's own inbox prefix): a stream's frames are
 * only ever sent to an inbox, never to a service or event subject.
 */
export const StreamInbox = z
  .string()
  .max(256)
  .regex(
    /^_INBOX[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$/,
    'stream inbox must be a NATS inbox subject (_INBOX.<token>[.<token>...])',
  );

/** Most data frames one end may leave unacknowledged (its receive buffer, in frames). */
export const MAX_STREAM_WINDOW = 1024;

/** One end of a stream: where it receives frames and how many data frames it buffers unacked. */
export const StreamEnd = z.object({
  inbox: StreamInbox,
  window: z.number().int().min(1).max(MAX_STREAM_WINDOW),
});
export type StreamEnd = z.infer<typeof StreamEnd>;

/**
 * Which of a process's streams a data frame carries. A log stream sends `log` frames holding
 * whole lines of the CRI-format log file; an attach session `stdout`/`stderr` out and `stdin` in.
 */
export const StreamChannel = { stdin: 0, stdout: 1, stderr: 2, log: 3 } as const;
export type StreamChannel = (typeof StreamChannel)[keyof typeof StreamChannel];
