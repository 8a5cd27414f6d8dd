import { BerthError, Code, TaskExit, TaskTopic } from '@berth/api';
import { type EventEnvelope, subscribeEvents } from '@berth/kit/events';
import { Channel } from './channel.js';
import type { Scope } from './scope.js';

export type { EventEnvelope };

/** Options of {@link Events.subscribe}. */
export interface EventFilter {
  /**
   * Topic patterns with NATS wildcards, e.g. `tasks.exit`, `tasks.*`, `images.>`; default `>`
   * (everything under `berth.events.`).
   */
  topics?: string[];
  /** Events of every namespace, not only the connection's. */
  allNamespaces?: boolean;
  /** Ends the stream when aborted. */
  signal?: AbortSignal;
  /** Events buffered for a slow reader before the stream fails with RESOURCE_EXHAUSTED (default 10000). */
  maxPending?: number;
}

/** A live stream of events: iterate it with for-await; `close()` (or `break`) stops it. */
export interface EventStream<T = unknown> extends AsyncIterableIterator<EventEnvelope<T>> {
  close(): void;
}

const TOKEN = /^[a-zA-Z0-9_-]+$/;

/** Checks a topic pattern: dot-separated tokens, `*` for one token, `>` last for the rest. */
export function validateTopic(topic: string): void {
  const parts = topic.split('.');
  parts.forEach((p, i) => {
    if (p === '*' || (p === '>' && i === parts.length - 1) || TOKEN.test(p)) return;
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `event topic "${topic}": token "${p}" must be letters, digits, _ or -, "*", or a final ">"`,
    );
  });
}

/** Events berth publishes on `berth.events.>` (containerd's event envelopes). */
export class Events {
  constructor(private readonly scope: Scope) {}

  /**
   * Subscribes to events matching the filter and returns them as an async iterator. Core NATS
   * is at-most-once: an event missed while disconnected is gone, so reconcile from the services'
   * state (e.g. `containers.list`) after a reconnect when every event matters.
   */
  subscribe(filter: EventFilter = {}): EventStream {
    const topics = filter.topics?.length ? filter.topics : ['>'];
    for (const t of topics) validateTopic(t);
    const subs: { unsubscribe(): void }[] = [];
    const onAbort = () => channel.end();
    const channel = new Channel<EventEnvelope>(filter.maxPending ?? 10_000, 'event stream', () => {
      for (const s of subs) s.unsubscribe();
      filter.signal?.removeEventListener('abort', onAbort);
    });
    for (const t of topics) {
      subs.push(
        subscribeEvents(this.scope.nc, t, (env) => {
          if (!filter.allNamespaces && env.namespace !== this.scope.namespace) return;
          channel.push(env);
        }),
      );
    }
    filter.signal?.addEventListener('abort', onAbort, { once: true });
    if (filter.signal?.aborted) channel.end();
    return Object.assign(channel, { close: () => channel.end() });
  }

  /**
   * The exits of tasks and exec processes (`tasks.exit`), typed and validated; a malformed event
   * is skipped. Resolves once the subscription is registered with the server, so no exit after
   * it is missed.
   */
  async exits(
    filter: Omit<EventFilter, 'topics'> = {},
  ): Promise<AsyncIterableIterator<TaskExit> & { close(): void }> {
    const stream = this.subscribe({ ...filter, topics: [TaskTopic.taskExit] });
    await this.scope.nc.flush();
    async function* typed(): AsyncGenerator<TaskExit> {
      for await (const env of stream) {
        const e = TaskExit.safeParse(env.event);
        if (e.success) yield e.data;
      }
    }
    return Object.assign(typed(), { close: () => stream.close() });
  }

  /** Waits until every subscription made so far is registered with the NATS server. */
  async ready(): Promise<void> {
    await this.scope.nc.flush();
  }
}
