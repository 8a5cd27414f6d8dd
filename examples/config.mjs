// Where the examples find berth: the same variables the berth CLI reads.
import { hostname } from 'node:os';

/** Connection options from the environment: BERTH_NATS_URL, BERTH_NODE_ID, BERTH_NAMESPACE. */
export function connectOptions() {
  return {
    natsUrl: process.env.BERTH_NATS_URL ?? 'nats://127.0.0.1:4222',
    node: process.env.BERTH_NODE_ID ?? hostname(),
    ...(process.env.BERTH_NAMESPACE ? { namespace: process.env.BERTH_NAMESPACE } : {}),
    ...(process.env.BERTH_NATS_CREDS ? { credentials: { credsFile: process.env.BERTH_NATS_CREDS } } : {}),
  };
}
