import { defineService, op, Scope, Service } from '@berth/api';
import { z } from 'zod';

/** The contract the same-node route tests serve (local-route.test.ts, socket-route.test.ts). */
export const RouteApi = defineService({
  name: Service.task,
  scope: Scope.cluster,
  ops: {
    echo: op({
      input: z.object({ text: z.string() }),
      output: z.object({ text: z.string(), namespace: z.string(), by: z.string() }),
      timeoutMs: 5_000,
      description: 'the text back, with the namespace the handler saw and the instance that answered',
    }),
    fail: op({
      input: z.object({ code: z.string(), message: z.string() }),
      output: z.object({}),
      timeoutMs: 5_000,
      description: 'fails with the given code and message',
    }),
    hold: op({
      input: z.object({ id: z.string() }),
      output: z.object({ id: z.string() }),
      timeoutMs: 5_000,
      description: 'answers when released',
    }),
  },
});
