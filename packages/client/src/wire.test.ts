import { Header } from '@berth/api';
import { startNats, type TestServer } from '@berth/testing';
import { trace } from '@opentelemetry/api';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import {
  JSONCodec,
  type MsgHdrs,
  type NatsConnection,
  connect as natsConnect,
  headers as natsHeaders,
} from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Berth, BerthError, Code, connect } from './index.js';

// The SDK on the wire, against a real nats-server with authentication: a bare responder stands
// in for a service, so the test sees exactly the headers and bodies the SDK sends and how it
// reads the answers. The services themselves are exercised in tests/e2e/sdk.test.ts.
const json = JSONCodec<unknown>();
const USER = { user: 'sdk', password: 'p@ss word' };
let nats: TestServer;
let raw: NatsConnection;
let berth: Berth;
let provider: NodeTracerProvider;
/** The server's URL without the credentials it carries: the SDK gets them as an option. */
const bare = () => nats.url.replace(/\/\/[^@/]*@/, '//');

beforeAll(async () => {
  nats = await startNats({ jetstream: false, auth: USER });
  raw = await natsConnect({ servers: bare(), user: USER.user, pass: USER.password });
  berth = await connect({
    natsUrl: bare(),
    credentials: USER,
    node: 'n1',
    namespace: 'ns1',
  });
  // The host program's tracing: a provider with the async-hooks context manager, no exporter.
  provider = new NodeTracerProvider();
  provider.register();
});
afterAll(async () => {
  await berth?.close();
  await raw?.close();
  await nats?.stop();
  await provider?.shutdown();
});

/** Answers the next request on `subject` with `reply` and resolves with the request's headers and body. */
function respondOnce(
  subject: string,
  reply: (
    body: unknown,
  ) => { data?: unknown; error?: { code: string; message: string; nats: number } } | null,
): Promise<{ headers: MsgHdrs | undefined; body: unknown }> {
  return new Promise((resolve) => {
    raw.subscribe(subject, {
      max: 1,
      callback: (_err, msg) => {
        const body = json.decode(msg.data);
        const r = reply(body);
        if (r?.error) {
          const h = natsHeaders();
          h.set('Nats-Service-Error-Code', String(r.error.nats));
          h.set('Nats-Service-Error', r.error.message);
          msg.respond(json.encode({ error: { code: r.error.code, message: r.error.message } }), {
            headers: h,
          });
        } else if (r) {
          msg.respond(json.encode(r.data ?? {}));
        }
        resolve({ headers: msg.headers, body });
      },
    });
  });
}

describe('the SDK on the wire', () => {
  it("sends the namespace and the host program's trace context, and types the error", async () => {
    const seen = respondOnce('berth.n1.image.v1.get', () => ({
      error: { code: Code.NOT_FOUND, message: 'image "x" not found', nats: 404 },
    }));
    await raw.flush();
    const tracer = trace.getTracer('host-program');
    const { err, traceId } = await tracer.startActiveSpan('host-operation', async (span) => {
      const e = await berth.images.get('x').catch((x: unknown) => x);
      span.end();
      return { err: e, traceId: span.spanContext().traceId };
    });
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.NOT_FOUND);
    expect((err as BerthError).message).toBe('image "x" not found');
    const req = await seen;
    expect(req.body).toEqual({ name: 'x' });
    expect(req.headers?.get(Header.namespace)).toBe('ns1');
    // W3C traceparent: version-traceid-spanid-flags, in the host program's trace.
    expect(req.headers?.get(Header.traceparent)).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`));
  });

  it("asks a snapshot's usage from the node's cache, or measured now with fresh", async () => {
    const reply = { data: { size: 4096, inodes: 2, measuredAt: '2026-12-04T18:00:00.000Z' } };
    const cached = respondOnce('berth.n1.snapshot.v1.usage', () => reply);
    await raw.flush();
    expect(await berth.snapshots.usage('k')).toEqual(reply.data);
    expect((await cached).body).toEqual({ key: 'k' });
    const fresh = respondOnce('berth.n1.snapshot.v1.usage', () => reply);
    await raw.flush();
    await berth.snapshots.usage('k', { fresh: true, timeoutMs: 5000 });
    expect((await fresh).body).toEqual({ key: 'k', fresh: true });
  });

  it('rejects a reply that breaks the contract with INTERNAL', async () => {
    const seen = respondOnce('berth.n1.snapshot.v1.stat', () => ({ data: { name: 42 } }));
    await raw.flush();
    const err = (await berth.snapshots.stat('k').catch((x: unknown) => x)) as BerthError;
    await seen;
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toMatch(/snapshot-service stat: the reply does not match its contract/);
  });

  it('answers UNAVAILABLE when no service listens, and fails a pull that falls silent', async () => {
    const none = (await berth.tasks.state('abc').catch((x: unknown) => x)) as BerthError;
    expect(none.code).toBe(Code.UNAVAILABLE);
    // A pull whose image-service took the request and then went quiet (no progress, no reply).
    const seen = respondOnce('berth.n1.image.v1.pull', () => null);
    await raw.flush();
    const t = berth.images.pullWithProgress('busybox', { silenceMs: 400 });
    const phases: string[] = [];
    const iterErr = await (async () => {
      for await (const p of t) phases.push(p.phase);
    })().catch((x: unknown) => x);
    const req = await seen;
    expect((req.body as { pullId: string }).pullId).toMatch(/^sdk-[0-9a-f]{16}$/);
    expect(phases).toEqual([]);
    expect((iterErr as BerthError).code).toBe(Code.UNAVAILABLE);
    await expect(t.result).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it('refuses bad event topics and options with INVALID_ARGUMENT', async () => {
    expect(() => berth.events.subscribe({ topics: ['tasks.ex it'] })).toThrow(BerthError);
    expect(() => berth.withNamespace('a/b')).toThrow(/namespace "a\/b"/);
    await expect(connect({ natsUrl: '', node: 'n1' })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });
});
