import { eventSubject } from '@berth/api/subjects';
import { context } from '@opentelemetry/api';
import { JSONCodec, type NatsConnection, headers as natsHeaders, type Subscription } from 'nats';
import { extractTrace, injectTrace } from './telemetry.js';

const json = JSONCodec<unknown>();

/** The envelope every event carries, as containerd's events.Envelope. */
export interface EventEnvelope<T = unknown> {
  topic: string;
  namespace: string;
  timestamp: string;
  event: T;
}

/**
 * Publishes an event on `berth.events.<topic>`. Core NATS is at-most-once: persist the state the
 * event describes before calling this, so consumers that miss it can reconcile.
 */
export function publishEvent<T>(nc: NatsConnection, topic: string, namespace: string, event: T): void {
  const h = natsHeaders();
  injectTrace(h);
  const env: EventEnvelope<T> = { topic, namespace, timestamp: new Date().toISOString(), event };
  nc.publish(eventSubject(topic), json.encode(env), { headers: h });
}

/**
 * Subscribes to events whose topic matches a NATS pattern (e.g. `tasks.*` or `>`). The event's
 * trace context is extracted only for a callback that takes it (a second parameter): extracting
 * loads the W3C propagator, which costs a short-lived process such as a CLI command ~40 ms.
 */
export function subscribeEvents(
  nc: NatsConnection,
  pattern: string,
  onEvent: (env: EventEnvelope, trace: ReturnType<typeof extractTrace>) => void,
): Subscription {
  const wantsTrace = onEvent.length >= 2;
  return nc.subscribe(eventSubject(pattern), {
    callback: (err, msg) => {
      if (err) return;
      try {
        const env = json.decode(msg.data) as EventEnvelope;
        onEvent(env, wantsTrace ? extractTrace(msg.headers) : context.active());
      } catch {
        // A malformed event from another process is dropped; the store stays the source of truth.
      }
    },
  });
}
