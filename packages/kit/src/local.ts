import { BerthError, Code, type OpDef, type ServiceDef, toBerthError } from '@berth/api';
import { type Client, describeIssue, invalidInput } from './client.js';
import { createLogger } from './logger.js';
import type { Handlers, RequestContext } from './service.js';

type AnyHandler = (input: unknown, ctx: RequestContext) => Promise<unknown>;

/**
 * A client that calls a service's handlers in this process, with the same input parsing and reply
 * check as over NATS: what conformance suites run beside the real client, so the wire is proven
 * to change nothing.
 */
export function localClient<S extends ServiceDef>(
  service: S,
  handlers: Handlers<S>,
  base: { namespace?: string } = {},
): Client<S> {
  const log = createLogger({ service: service.name, node: 'local', level: 'silent' });
  const table = handlers as unknown as Record<string, AnyHandler>;
  const out: Record<string, (input: unknown, opts?: { namespace?: string }) => Promise<unknown>> = {};
  for (const [op, def] of Object.entries(service.ops) as [string, OpDef][]) {
    const handler = table[op];
    if (!handler) continue;
    out[op] = async (input, opts) => {
      const parsed = def.input.safeParse(input ?? {});
      if (!parsed.success) throw invalidInput(service.name, op, parsed.error);
      let reply: unknown;
      try {
        reply = await handler(parsed.data, {
          namespace: opts?.namespace ?? base.namespace ?? 'default',
          headers: undefined,
          log,
          signal: new AbortController().signal,
        });
      } catch (err) {
        // What crosses the wire: the code and message, nothing else.
        const e = toBerthError(err);
        throw new BerthError(e.code, e.message);
      }
      const checked = def.output.safeParse(reply ?? {});
      if (!checked.success) {
        throw new BerthError(
          Code.INTERNAL,
          `${service.name} ${op}: the reply does not match its contract: ${describeIssue(checked.error)}`,
        );
      }
      return checked.data;
    };
  }
  return out as unknown as Client<S>;
}
