// The contract of the kit's test service (test-service.mjs): a cluster-wide service under the
// task-service's name with operations that exercise the kit (echo, errors, held requests, big
// replies, trace context, the NATS server in use, Redis writes and reads). Plain JS so the child process can load it without a build step.
import { defineService, op, Scope, Service } from '@berth/api';
import { z } from 'zod';

export const TestApi = defineService({
  name: Service.task,
  scope: Scope.cluster,
  ops: {
    echo: op({
      input: z.object({ text: z.string() }),
      output: z.object({ text: z.string(), pid: z.number() }),
      timeoutMs: 5_000,
      description: 'the text back, with the pid that answered',
    }),
    fail: op({
      input: z.object({ code: z.string(), message: z.string() }),
      output: z.object({}),
      timeoutMs: 5_000,
      description: 'fails with the given code and message',
    }),
    crash: op({
      input: z.object({ message: z.string() }),
      output: z.object({}),
      timeoutMs: 5_000,
      description: 'throws a plain Error',
    }),
    hold: op({
      input: z.object({ id: z.string() }),
      output: z.object({ id: z.string(), pid: z.number() }),
      timeoutMs: 20_000,
      description: 'answers once test.release.<id> is published',
    }),
    // hold as a long operation: its callers are watched by heartbeats (isLongOp).
    'hold-long': op({
      input: z.object({ id: z.string() }),
      output: z.object({ id: z.string(), pid: z.number() }),
      timeoutMs: 60_000,
      description: 'hold, with heartbeats while it is held',
    }),
    big: op({
      input: z.object({ bytes: z.number().int() }),
      output: z.object({ data: z.string() }),
      timeoutMs: 5_000,
      description: 'a reply of the given size',
    }),
    trace: op({
      input: z.object({}),
      output: z.object({
        traceId: z.string(),
        spanId: z.string(),
        traceparent: z.string(),
        namespace: z.string(),
      }),
      timeoutMs: 5_000,
      description: 'the trace context and namespace the handler saw',
    }),
    where: op({
      input: z.object({}),
      output: z.object({ server: z.string(), pid: z.number() }),
      timeoutMs: 5_000,
      description: 'the NATS server (host:port) the service is connected to',
    }),
    put: op({
      input: z.object({ key: z.string(), value: z.string() }),
      output: z.object({}),
      timeoutMs: 10_000,
      description: 'stores value under berth:v1:test:<key> in Redis',
    }),
    get: op({
      input: z.object({ key: z.string() }),
      output: z.object({ value: z.string().nullable() }),
      timeoutMs: 10_000,
      description: 'the value stored under berth:v1:test:<key>, or null',
    }),
    // Replies with a shape its contract refuses, to prove replies are checked.
    liar: op({
      input: z.object({}),
      output: z.object({ count: z.number() }),
      timeoutMs: 5_000,
      description: 'answers {count: "many"}',
    }),
  },
});
