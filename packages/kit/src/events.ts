import { eventSubject } from '@berth/api/subjects';
import { type Context, context, type Link, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { JSONCodec, type NatsConnection, headers as natsHeaders, type Subscription } from 'nats';
import { extractTrace, injectTrace } from './telemetry.js';

const json = JSONCodec<unknown>();
const tracer = trace.getTracer('berth.events');

/** The envelope every event carries, as containerd's events.Envelope. */
export interface EventEnvelope<T = unknown> {
  topic: string;
  namespace: string;
  timestamp: string;
  event: T;
}

// Progress events come by the dozen per pull: they carry the trace context but get no spans of
// their own, which would bury the waterfall.
const untraced = (topic: string) => topic.includes('.progress');

/**
 * Publishes an event on `berth.events.<topic>`, from a PRODUCER span child of `ctx` (default: the
 * active context, i.e. the operation that caused the event), whose context the event carries.
 * Core NATS is at-most-once: persist the state the event describes before calling this, so
 * consumers that miss it can reconcile.
 */
export function publishEvent<T>(
  nc: NatsConnection,
  topic: string,
  namespace: string,
  event: T,
  ctx: Context = context.active(),
): void {
  const h = natsHeaders();
  const env: EventEnvelope<T> = { topic, namespace, timestamp: new Date().toISOString(), event };
  const subject = eventSubject(topic);
  if (untraced(topic) || !trace.getSpanContext(ctx)) {
    injectTrace(h, ctx);
    nc.publish(subject, json.encode(env), { headers: h });
    return;
  }
  const span = tracer.startSpan(
    `publish ${subject}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'publish',
        'messaging.destination.name': subject,
        'berth.namespace': namespace,
        'berth.event.topic': topic,
      },
    },
    ctx,
  );
  try {
    injectTrace(h, trace.setSpan(ctx, span));
    nc.publish(subject, json.encode(env), { headers: h });
    span.setStatus({ code: SpanStatusCode.OK });
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}

/**
 * Subscribes to events whose topic matches a NATS pattern (e.g. `tasks.*` or `>`). Each traced
 * event is handled in a CONSUMER span linked to the producer's span: a child of the subscriber's
 * own operation when it subscribed inside one (the CLI waiting for an exit), else a child of the
 * producer (a service reacting to it joins the trace that caused it). `onEvent` also gets the
 * producer's context.
 */
export function subscribeEvents(
  nc: NatsConnection,
  pattern: string,
  onEvent: (env: EventEnvelope, trace: ReturnType<typeof extractTrace>) => void,
): Subscription {
  const subscriber = context.active();
  const own = trace.getSpanContext(subscriber) !== undefined;
  return nc.subscribe(eventSubject(pattern), {
    callback: (err, msg) => {
      if (err) return;
      let env: EventEnvelope;
      try {
        env = json.decode(msg.data) as EventEnvelope;
      } catch {
        // A malformed event from another process is dropped; the store stays the source of truth.
        return;
      }
      const producer = extractTrace(msg.headers);
      const producerSpan = trace.getSpanContext(producer);
      if (!producerSpan || untraced(String(env.topic))) {
        deliver(onEvent, env, producer);
        return;
      }
      const links: Link[] = [{ context: producerSpan }];
      const span = tracer.startSpan(
        `process ${msg.subject}`,
        {
          kind: SpanKind.CONSUMER,
          links,
          attributes: {
            'messaging.system': 'nats',
            'messaging.operation.type': 'process',
            'messaging.destination.name': msg.subject,
            'berth.event.topic': String(env.topic),
          },
        },
        own ? subscriber : producer,
      );
      context.with(trace.setSpan(own ? subscriber : producer, span), () => deliver(onEvent, env, producer));
      span.end();
    },
  });
}

function deliver(
  onEvent: (env: EventEnvelope, trace: Context) => void,
  env: EventEnvelope,
  producer: Context,
): void {
  try {
    onEvent(env, producer);
  } catch {
    // A subscriber that throws must not end the subscription for everyone else.
  }
}
