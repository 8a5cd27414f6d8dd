import type { BerthError } from '@berth/api/errors';
import type { Counter } from '@opentelemetry/api';
import { type Attributes, type Histogram, metrics, type UpDownCounter } from '@opentelemetry/api';
import { EndpointStats } from './endpoint-stats.js';

/** Bucket bounds (seconds) of request latency histograms: a stat is a few ms, a pull minutes. */
export const LATENCY_BUCKETS_S = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
] as const;

/** Names of the instruments every berth service records per operation (OpenTelemetry spelling). */
export const RequestInstrument = {
  /** Counter: requests answered, by `op` and `outcome` (`ok` or the berth error code). */
  requests: 'berth.requests',
  /** Histogram (s): time from a request's arrival to its answer, by `op` and `outcome`. */
  duration: 'berth.request.duration',
  /** UpDownCounter: requests being handled now, by `op`. */
  inFlight: 'berth.requests.in_flight',
} as const;

/** The outcome label of an answered request: `ok`, or the error code in lower case (`not_found`). */
export function outcomeOf(err: BerthError | undefined): string {
  return err ? err.code.toLowerCase() : 'ok';
}

/**
 * Measures every request a service answers, once, for both places that report it: `$SRV.STATS`
 * (through {@link EndpointStats}) and the OpenTelemetry instruments (request count and latency by
 * outcome, requests in flight). Without a registered MeterProvider the instruments are no-ops.
 */
export class RequestTracker {
  readonly stats = new EndpointStats();
  private readonly count: Counter;
  private readonly duration: Histogram;
  private readonly inFlight: UpDownCounter;

  constructor(service: string) {
    const meter = metrics.getMeter(`berth.${service}`);
    this.count = meter.createCounter(RequestInstrument.requests, {
      description: 'Requests answered, by operation and outcome',
      unit: '{request}',
    });
    this.duration = meter.createHistogram(RequestInstrument.duration, {
      description: 'Time from the arrival of a request to its answer',
      unit: 's',
      advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_S] },
    });
    this.inFlight = meter.createUpDownCounter(RequestInstrument.inFlight, {
      description: 'Requests being handled now',
      unit: '{request}',
    });
  }

  /** Declares an operation served on `subject`. */
  add(op: string, subject: string): void {
    this.stats.add(op, subject);
    // Series exist from the start, so a scrape before the first request shows zeros, not nothing.
    this.inFlight.add(0, { op });
  }

  /**
   * Marks a request of `op` as arrived. Call the returned function once, when it is answered
   * (with the error it was answered with); later calls are ignored.
   */
  begin(op: string): (err?: BerthError) => void {
    const endStats = this.stats.begin(op);
    const start = performance.now();
    const opAttrs: Attributes = { op };
    this.inFlight.add(1, opAttrs);
    let done = false;
    return (err?: BerthError) => {
      if (done) return;
      done = true;
      endStats(err ? `${err.code}: ${err.message}` : undefined);
      this.inFlight.add(-1, opAttrs);
      const attrs: Attributes = { op, outcome: outcomeOf(err) };
      this.count.add(1, attrs);
      this.duration.record((performance.now() - start) / 1000, attrs);
    };
  }
}
