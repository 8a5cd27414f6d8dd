import type { BerthError } from '@berth/api';
import { LATENCY_BUCKETS_S, outcomeOf, serviceMeter } from '@berth/kit';
import type { Counter, Histogram } from '@opentelemetry/api';

interface CriInstruments {
  count: Counter;
  duration: Histogram;
}

// Calls being handled now, per RPC: counted here and observed when metrics are collected, so a
// call's arrival costs a map update instead of an instrument record (attributes hashed, storage
// looked up) on its request path.
const inFlight = new Map<string, number>();

let made: CriInstruments | undefined;

function instruments(): CriInstruments {
  if (made) return made;
  const m = serviceMeter('cri-gateway');
  made = {
    count: m.createCounter('berth.cri.requests', {
      description: 'CRI gRPC calls answered, by RPC and outcome',
      unit: '{request}',
    }),
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
    const attrs = { rpc, outcome: outcomeOf(err) };
    i.count.add(1, attrs);
    i.duration.record((performance.now() - start) / 1000, attrs);
  };
}
