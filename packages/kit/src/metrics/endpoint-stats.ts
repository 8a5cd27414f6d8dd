import type { Endpoint } from 'nats';

/** What one endpoint has done since the service started, measured around the awaited handler. */
interface OpFigures {
  requests: number;
  errors: number;
  /** Total processing time in nanoseconds, as `$SRV.STATS` reports it. */
  processingNs: number;
  lastError: string | undefined;
  inFlight: number;
}

/** The fields of nats.js's per-endpoint stats object that `$SRV.STATS` replies are built from. */
interface NatsEndpointFigures {
  num_requests: number;
  num_errors: number;
  processing_time: number;
  average_processing_time: number;
  last_error?: string;
}

function isNatsFigures(v: unknown): v is NatsEndpointFigures {
  const o = v as Partial<NatsEndpointFigures> | undefined;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.num_requests === 'number' &&
    typeof o.num_errors === 'number' &&
    typeof o.processing_time === 'number' &&
    typeof o.average_processing_time === 'number'
  );
}

/**
 * Counts requests, errors and processing time per endpoint as the kit sees them, so `$SRV.STATS`
 * tells the truth. nats.js times the synchronous call of an endpoint's callback and counts only
 * errors thrown from it; berth's handlers are asynchronous (and run concurrently), so nats.js would
 * see every request finish at once without error. The kit records each request when its handler
 * has answered, and `statsHandler` (the Service API's hook, called for every endpoint while a
 * STATS reply is built) writes these figures over the ones nats.js measured.
 */
export class EndpointStats {
  private readonly bySubject = new Map<string, OpFigures>();
  private readonly byOp = new Map<string, OpFigures>();

  /** Declares an endpoint; `op` names it in `record`, `subject` is how nats.js names it. */
  add(op: string, subject: string): void {
    const f: OpFigures = { requests: 0, errors: 0, processingNs: 0, lastError: undefined, inFlight: 0 };
    this.byOp.set(op, f);
    this.bySubject.set(subject, f);
  }

  /** Marks a request of `op` as started; the returned function records its end (with its error, if any). */
  begin(op: string): (error?: string) => void {
    const f = this.byOp.get(op);
    if (!f) return () => undefined;
    const start = process.hrtime.bigint();
    f.inFlight++;
    let done = false;
    return (error?: string) => {
      if (done) return;
      done = true;
      f.inFlight--;
      f.requests++;
      f.processingNs += Number(process.hrtime.bigint() - start);
      if (error !== undefined) {
        f.errors++;
        f.lastError = error;
      }
    };
  }

  /** The figures of one operation (requests, errors, total and average processing time in ns). */
  figures(op: string): NatsEndpointFigures & { in_flight: number } {
    const f = this.byOp.get(op);
    if (!f) throw new Error(`no endpoint "${op}"`);
    return { ...toNats(f), in_flight: f.inFlight };
  }

  /**
   * The Service API's `statsHandler`: replaces nats.js's figures of the endpoint with the kit's,
   * and returns the endpoint's custom `data` (requests in flight now).
   */
  readonly statsHandler = async (endpoint: Endpoint): Promise<unknown> => {
    const f = this.bySubject.get(endpoint.subject);
    if (!f) return null;
    // nats.js passes its own endpoint record, which holds the stats object the reply is built from.
    const stats = (endpoint as Endpoint & { stats?: unknown }).stats;
    if (isNatsFigures(stats)) Object.assign(stats, toNats(f));
    return { in_flight: f.inFlight };
  };
}

function toNats(f: OpFigures): NatsEndpointFigures {
  return {
    num_requests: f.requests,
    num_errors: f.errors,
    processing_time: f.processingNs,
    average_processing_time: f.requests > 0 ? Math.round(f.processingNs / f.requests) : 0,
    ...(f.lastError !== undefined ? { last_error: f.lastError } : {}),
  };
}
