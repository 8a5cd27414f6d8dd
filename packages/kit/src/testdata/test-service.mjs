// A small berth service the kit's integration tests run as a child process. It is built only from
// the kit's public API (runService) so the tests exercise what real services use.
import { BerthError } from '@berth/api';
import { trace } from '@opentelemetry/api';
import { runService } from '../../dist/index.js';
import { TestApi } from './test-api.mjs';

await runService({
  service: TestApi,
  version: '0.0.0-test',
  setup: async ({ nc, redis }) => {
    // Answers only when the test publishes on test.release.<id>, so a test controls exactly how
    // long the request stays in flight without guessing at timings.
    const hold = async ({ id }, ctx) => {
      // A callback subscription: draining it on shutdown does not end the wait, so an unreleased
      // hold really never finishes by itself.
      const released = new Promise((resolve) => {
        nc.subscribe(`test.release.${id}`, { max: 1, callback: resolve });
      });
      await nc.flush();
      ctx.log.info({ holdId: id }, 'hold started');
      await released;
      return { id, pid: process.pid };
    };
    return {
      handlers: {
        echo: async ({ text }) => ({ text, pid: process.pid }),
        fail: async ({ code, message }) => {
          throw new BerthError(code, message);
        },
        crash: async ({ message }) => {
          throw new Error(message);
        },
        hold,
        'hold-long': hold,
        big: async ({ bytes }) => ({ data: 'x'.repeat(bytes) }),
        liar: async () => ({ count: 'many' }),
        where: async () => ({ server: nc.getServer(), pid: process.pid }),
        put: async ({ key, value }) => {
          await redis.set(`berth:v1:test:${key}`, value);
          return {};
        },
        get: async ({ key }) => ({ value: await redis.get(`berth:v1:test:${key}`) }),
        trace: async (_input, ctx) => {
          const sc = trace.getActiveSpan()?.spanContext();
          return {
            traceId: sc?.traceId ?? '',
            spanId: sc?.spanId ?? '',
            traceparent: ctx.headers?.get('traceparent') ?? '',
            namespace: ctx.namespace,
          };
        },
      },
    };
  },
});
