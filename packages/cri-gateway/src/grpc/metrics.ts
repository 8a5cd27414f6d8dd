import type { BerthError } from '@berth/api';
import { LATENCY_BUCKETS_S, outcomeOf, serviceMeter } from '@berth/kit';
import type { Histogram } from '@opentelemetry/api';

interface CriInstruments {
  duration: Histogram;
}

// Calls being handled now, per RPC: counted here and observed when metrics are collected, so a
// call's arrival costs a map update instead of an instrument record (attributes hashed, storage
// looked up) on its request path.
const inFlight = new Map<string, number>();

/** The calls answered with one outcome of one RPC, and the attributes they are recorded with. */
interface Answered {
  readonly attrs: Readonly<{ rpc: string; outcome: string }>;
  n: number;
}

// Answered calls per RPC and outcome, counted here and observed at collection like inFlight: the
// SDK hashes a record's attributes each time (sorting and joining them into a string), about 1.4 KB
// of garbage and a few µs per call. The duration histogram still records each call, with the
// key's attribute object rather than a new one per call.
const answered = new Map<string, Map<string, Answered>>();

function answeredOf(rpc: string, outcome: string): Answered {
  let byOutcome = answered.get(rpc);
  if (!byOutcome) {
    byOutcome = new Map();
    answered.set(rpc, byOutcome);
  }
  let a = byOutcome.get(outcome);
  if (!a) {
    a = { attrs: { rpc, outcome }, n: 0 };
    byOutcome.set(outcome, a);
  }
  return a;
}

let made: CriInstruments | undefined;

function instruments(): CriInstruments {
  if (made) return made;
  const m = serviceMeter('cri-gateway');
  m.createObservableCounter('berth.cri.requests', {
    description: 'CRI gRPC calls answered, by RPC and outcome',
    unit: '{request}',
  }).addCallback((result) => {
    for (const byOutcome of answered.values())
      for (const a of byOutcome.values()) result.observe(a.n, a.attrs);
  });
  made = {
    duration: m.createHistogram('berth.cri.request.duration', {
      description: 'Time from the arrival of a CRI call to its answer (a stream: to its end)',
      unit: 's',
      advice: { explicitBucketBoundaries: [...LATENCY_BUCKETS_S] },
    }),
  };
  m.createObservableUpDownCounter('berth.cri.requests.in_flight', {
    description: 'CRI calls being handled now',
    unit: '{request}',
  }).addCallback((result) => {
    for (const [rpc, n] of inFlight) result.observe(n, { rpc });
  });
  return made;
}

/**
 * Marks a CRI call of `rpc` ("RuntimeService/RunPodSandbox") as arrived; call the returned
 * function once when it is answered, with the error it failed with. Prometheus names:
 * `berth_cri_requests_total`, `berth_cri_request_duration_seconds`, `berth_cri_requests_in_flight`.
 */
export function beginCriCall(rpc: string): (err?: BerthError) => void {
  const i = instruments();
  const start = performance.now();
  inFlight.set(rpc, (inFlight.get(rpc) ?? 0) + 1);
  let done = false;
  return (err) => {
    if (done) return;
    done = true;
    inFlight.set(rpc, (inFlight.get(rpc) ?? 1) - 1);
    const a = answeredOf(rpc, outcomeOf(err));
    a.n++;
    i.duration.record((performance.now() - start) / 1000, a.attrs);
  };
}
