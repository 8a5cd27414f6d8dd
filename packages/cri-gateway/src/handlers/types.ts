import type { Logger } from '@berth/kit';
import type { InfoProbe } from '../runtime/status.js';

/** What every CRI handler may use: the domain's dependencies, never the gRPC call itself. */
export interface HandlerDeps {
  probe: InfoProbe;
  log: Logger;
}

/** A unary CRI handler: a request message in, a response message out (proto field names). */
// biome-ignore lint/suspicious/noExplicitAny: messages are plain objects shaped by the proto
export type UnaryHandler = (request: any, deps: HandlerDeps) => Promise<unknown>;
