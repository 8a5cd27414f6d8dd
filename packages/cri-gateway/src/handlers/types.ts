import type { Logger } from '@berth/kit';
import type { ImageOpsDeps } from '../images/image-ops.js';
import type { ContainerRuntime } from '../runtime/containers.js';
import type { EventSource } from '../runtime/events.js';
import type { PodRuntime } from '../runtime/pods.js';
import type { StatsRuntime } from '../runtime/stats.js';
import type { InfoProbe } from '../runtime/status.js';
import type { StreamUrls } from '../runtime/stream-urls.js';

/** What every CRI handler may use: the domain's dependencies, never the gRPC call itself. */
export interface HandlerDeps extends ImageOpsDeps {
  probe: InfoProbe;
  log: Logger;
  pods: PodRuntime;
  containers: ContainerRuntime;
  stats: StatsRuntime;
  /** The URLs of the streaming server (Exec, Attach, PortForward). */
  streams: StreamUrls;
  /** berth's events (for GetContainerEvents). */
  events: EventSource;
}

/**
 * A unary CRI handler: a request message in, a response message out (proto field names), in a
 * promise, or at once when the handler has it in memory (a kept reply): the servers write that
 * without a turn through the microtask queue.
 */
// biome-ignore lint/suspicious/noExplicitAny: messages are plain objects shaped by the proto
export type UnaryHandler = (request: any, deps: HandlerDeps) => unknown;

/**
 * A server-streaming CRI handler: yields the response messages; returning ends the stream OK.
 * `signal` aborts when the client cancels or the server shuts down (for streams that wait).
 */
export type StreamHandler = (
  // biome-ignore lint/suspicious/noExplicitAny: messages are plain objects shaped by the proto
  request: any,
  deps: HandlerDeps,
  signal: AbortSignal,
) => AsyncIterable<unknown>;
