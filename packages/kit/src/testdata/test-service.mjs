// A small berth service the kit's integration tests run as a child process. It is built only from
// the kit's public API (runService, endpoint) so the tests exercise what real services use.
import { BerthError, Service } from '@berth/api';
import { trace } from '@opentelemetry/api';
import { z } from 'zod';
import { endpoint, runService } from '../../dist/index.js';

await runService({
  service: Service.task,
  version: '0.0.0-test',
  setup: async ({ nc }) => ({
    endpoints: {
      echo: endpoint(z.object({ text: z.string() }), async ({ text }) => ({ text, pid: process.pid })),
      fail: endpoint(z.object({ code: z.string(), message: z.string() }), async ({ code, message }) => {
        throw new BerthError(code, message);
      }),
      crash: endpoint(z.object({ message: z.string() }), async ({ message }) => {
        throw new Error(message);
      }),
      // Answers only when the test publishes on test.release.<id>, so a test controls exactly how
      // long the request stays in flight without guessing at timings.
      hold: endpoint(z.object({ id: z.string() }), async ({ id }, ctx) => {
        // A callback subscription: draining it on shutdown does not end the wait, so an unreleased
        // hold really never finishes by itself.
        const released = new Promise((resolve) => {
          nc.subscribe(`test.release.${id}`, { max: 1, callback: resolve });
        });
        await nc.flush();
        ctx.log.info({ holdId: id }, 'hold started');
        await released;
        return { id, pid: process.pid };
      }),
      big: endpoint(z.object({ bytes: z.number().int() }), async ({ bytes }) => ({
        data: 'x'.repeat(bytes),
      })),
      trace: endpoint(z.object({}), async (_input, ctx) => {
        const sc = trace.getActiveSpan()?.spanContext();
        return {
          traceId: sc?.traceId ?? '',
          spanId: sc?.spanId ?? '',
          traceparent: ctx.headers?.get('traceparent') ?? '',
          namespace: ctx.namespace,
        };
      }),
    },
  }),
});
