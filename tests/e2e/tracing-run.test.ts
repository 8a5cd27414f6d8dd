import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { topLevelKeys } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBerth } from '../harness/berth.js';
import {
  OtlpKind,
  type OtlpReceiver,
  OtlpStatus,
  type ReceivedSpan,
  startOtlpReceiver,
} from '../harness/otlp.js';
import { type Stack, waitFor } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// Issue 10's promise for one `berth run`: one trace whose root is the CLI's command span, with the
// server spans of every service it crossed, the shim's work down to each runc invocation (exit
// status included), the registry requests and layers of the pull it needed, and the container's
// exit announced in the same trace and linked by its consumers; no span whose parent is missing.
// Then the same without any collector, read back with `berth trace`.

let f: UpFixture;
let image: string;

beforeAll(async () => {
  f = await startUpFixture();
  image = f.image;
}, 120_000);

afterAll(() => f?.stop(), 90_000);

const traceIdOf = (stderr: string) => /trace id ([0-9a-f]{32})/.exec(stderr)?.[1] ?? '';

/** Spans whose parent is not in the trace. */
function orphans(spans: { spanId: string; parentSpanId: string }[]) {
  const ids = new Set(spans.map((s) => s.spanId));
  return spans.filter((s) => s.parentSpanId !== '' && !ids.has(s.parentSpanId));
}

/**
 * Spans whose other half is not in the list yet: an RPC client span (`service/op`) without its
 * server span, a publish of a container, task or image event without the consumer span of the
 * CRI gateway (which subscribes to those families, not to snapshot events: its subscriptions in
 * gateway.ts). The services flush on their own timers, so a trace read too early lacks these.
 */
function unanswered(spans: { spanId: string; parentSpanId: string; name: string; kind: number }[]) {
  const children = new Map<string, number[]>();
  for (const s of spans) children.set(s.parentSpanId, [...(children.get(s.parentSpanId) ?? []), s.kind]);
  return spans.filter(
    (s) =>
      (s.kind === 2 && /^[a-z-]+\/[a-z-]+$/.test(s.name) && !children.get(s.spanId)?.includes(1)) ||
      (s.kind === 3 &&
        /^publish berth\.events\.(containers|tasks|images)\.[^.]+$/.test(s.name) &&
        !children.get(s.spanId)?.includes(4)),
  );
}

const describeAll = (spans: ReceivedSpan[]) =>
  spans.map((s) => `${s.service} ${s.name} kind=${s.kind} ${s.spanId}<-${s.parentSpanId}`).join('\n');

/** The spans of one trace once every span named by `complete` arrived and none is an orphan. */
async function wholeTrace(
  otlp: OtlpReceiver,
  traceId: string,
  complete: (spans: ReceivedSpan[]) => boolean,
): Promise<ReceivedSpan[]> {
  try {
    return await waitFor('the whole trace', () => {
      const spans = otlp.spans().filter((s) => s.traceId === traceId);
      return complete(spans) && orphans(spans).length === 0 ? spans : undefined;
    });
  } catch (err) {
    const got = otlp.spans().filter((s) => s.traceId === traceId);
    throw new Error(`${(err as Error).message}\n${describeAll(got)}`);
  }
}

describe('with a collector', () => {
  let stack: Stack;
  let otlp: OtlpReceiver;
  beforeAll(async () => {
    otlp = await startOtlpReceiver();
    stack = await f.addStack({ env: otlp.env() });
  }, 120_000);
  afterAll(async () => {
    await otlp?.stop();
  });

  it('berth run --rm IMAGE true is one trace from the CLI down to runc, the pull and the exit', async () => {
    const run = await stack.berth('--trace', 'run', '--rm', image, 'true');
    expect(run.code, run.stderr).toBe(0);
    const traceId = traceIdOf(run.stderr);
    expect(traceId, run.stderr).toMatch(/^[0-9a-f]{32}$/);
    const has = (spans: ReceivedSpan[], service: string, name: string) =>
      spans.some((s) => s.service === service && s.name === name);
    const spans = await wholeTrace(
      otlp,
      traceId,
      (t) =>
        has(t, 'berth', 'berth run') &&
        has(t, 'shim', 'runc delete') &&
        has(t, 'shim', 'task exit') &&
        t.some((s) => s.kind === OtlpKind.consumer && s.name.includes('tasks.exit')) &&
        has(t, 'snapshot-service', 'layer apply'),
    );
    const one = (service: string, name: string, kind?: OtlpKind) => {
      const found = spans.filter(
        (s) => s.service === service && s.name === name && (kind === undefined || s.kind === kind),
      );
      expect(found.length, `${service} ${name} in\n${describeAll(spans)}`).toBeGreaterThan(0);
      return found[0] as ReceivedSpan;
    };

    // One root, the CLI's, carrying the command's outcome.
    const roots = spans.filter((s) => s.parentSpanId === '');
    expect(roots.map((r) => `${r.service} ${r.name}`)).toEqual(['berth berth run']);
    expect(roots[0]).toMatchObject({
      status: { code: OtlpStatus.ok },
      attributes: { 'process.exit.code': 0 },
    });
    expect(orphans(spans)).toEqual([]);

    // A server span in every service the run crossed, with the RPC and messaging conventions.
    for (const svc of ['image-service', 'snapshot-service', 'task-service', 'shim']) {
      expect(
        spans.some((s) => s.service === svc && s.kind === OtlpKind.server),
        svc,
      ).toBe(true);
    }
    // Each call of the CLI is its client span, parent of the callee's server span. With no
    // session to attach first, the CLI makes the container and starts its task in one call
    // (run-container; a first one failed NOT_FOUND before the pull), and the shim starts the task
    // in its create: one shim request, no `start`.
    expect(spans.some((s) => s.name === 'shim/start')).toBe(false);
    expect(spans.some((s) => s.service === 'berth' && /^task-service\/(create|start)$/.test(s.name))).toBe(
      false,
    );
    const shimCreate = one('shim', 'shim/create', OtlpKind.server);
    const shimCreateCall = spans.find((s) => s.spanId === shimCreate.parentSpanId);
    const taskCreate = spans.find((s) => s.spanId === shimCreateCall?.parentSpanId);
    expect(taskCreate).toMatchObject({ service: 'task-service', name: 'task-service/run-container' });
    expect(taskCreate?.kind).toBe(OtlpKind.server);
    const cliCreate = spans.find((s) => s.spanId === taskCreate?.parentSpanId);
    expect(cliCreate).toMatchObject({ service: 'berth', name: 'task-service/run-container' });
    expect(cliCreate?.kind).toBe(OtlpKind.client);
    expect(cliCreate?.parentSpanId).toBe(roots[0]?.spanId);
    expect(shimCreate.attributes).toMatchObject({
      'rpc.system': 'nats',
      'rpc.method': 'create',
      'messaging.system': 'nats',
      'berth.namespace': 'default',
    });
    // berth's own attributes: what each request worked on.
    const containerId = String(shimCreate.attributes['berth.container.id']);
    expect(containerId).toMatch(/^[0-9a-f]{64}$/);
    // run-container names no container (it makes one): its span carries the image it runs.
    expect(taskCreate?.attributes['berth.image.ref']).toBe(image);
    expect(one('image-service', 'image-service/pull', OtlpKind.server).attributes['berth.image.ref']).toBe(
      image,
    );
    expect(String(shimCreate.attributes['messaging.destination.name'])).toBe(
      `berth.${stack.nodeId}.shim.v1.create`,
    );

    // The shim's work: rootfs, bundle, conmon, and every runc invocation with its exit status.
    for (const name of ['rootfs mount', 'bundle write', 'conmon start']) one('shim', name);
    for (const name of ['runc create', 'runc delete']) {
      const r = one('shim', name);
      expect(r.attributes['process.exit.code'], name).toBe(0);
      expect(String(r.attributes['process.command_args']), name).toContain(name.split(' ')[1]);
      expect(r.status.code, name).toBe(OtlpStatus.ok);
    }
    // The start does what `runc start` does through runc's exec fifo, without spawning runc.
    const start = one('shim', 'runc start (exec fifo)');
    expect(start.attributes['berth.start.through']).toBe('started');
    expect(start.status.code).toBe(OtlpStatus.ok);
    expect(start.parentSpanId).toBe(shimCreate.spanId);
    expect(spans.some((s) => s.service === 'shim' && /^cni bridge ADD$/.test(s.name))).toBe(true);

    // The pull it needed: registry requests (no credentials in the URL), verification, commit, layers.
    const gets = spans.filter(
      (s) => s.service === 'image-service' && s.name === 'GET' && s.kind === OtlpKind.client,
    );
    expect(gets.length).toBeGreaterThan(1);
    for (const g of gets) {
      expect(String(g.attributes['url.full'])).toMatch(new RegExp(`^http://${f.registry.host}/v2/`));
      expect(g.attributes['http.response.status_code']).toBe(200);
    }
    expect(gets.some((g) => Number(g.attributes['http.response.body.size']) > 0)).toBe(true);
    one('image-service', 'digest verify');
    one('image-service', 'blob commit');
    const layer = one('snapshot-service', 'layer apply');
    expect(Number(layer.attributes['berth.layer.bytes'])).toBeGreaterThan(0);
    expect(Number(layer.attributes['berth.layer.files'])).toBeGreaterThan(0);
    expect(String(layer.attributes['berth.chain_id'])).toMatch(/^sha256:[0-9a-f]{64}$/);

    // The exit: announced in this trace, in a span of its own, and linked by its consumers.
    const exit = one('shim', 'task exit');
    expect(exit.attributes['process.exit.code']).toBe(0);
    // Under the request that created and started the process.
    const exitParent = spans.find((s) => s.spanId === exit.parentSpanId);
    expect(exitParent?.name).toBe('shim/create');
    expect(exitParent?.attributes['berth.container.id']).toBe(containerId);
    const producer = spans.find((s) => s.kind === OtlpKind.producer && s.parentSpanId === exit.spanId);
    expect(producer?.name).toBe('publish berth.events.tasks.exit');
    const consumers = spans.filter(
      (s) => s.kind === OtlpKind.consumer && s.name === 'process berth.events.tasks.exit',
    );
    expect(consumers.length).toBeGreaterThan(0);
    for (const c of consumers) expect(c.links).toContainEqual({ traceId, spanId: producer?.spanId });

    // Every process says who it is: the real host name and its own instance id.
    for (const s of spans) {
      expect(s.resource['host.name'], s.service).toBe(hostname());
      expect(String(s.resource['service.instance.id']), s.service).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(
      new Set(spans.filter((s) => s.service === 'berth').map((s) => s.resource['service.instance.id'])).size,
    ).toBe(1);
    expect(otlp.errors()).toEqual([]);
  });

  it('a command that fails records its exit code on the root and the error on the spans that failed', async () => {
    const run = await stack.berth('--trace', 'run', '--rm', image, '/nonexistent');
    expect(run.code).toBe(127);
    const traceId = traceIdOf(run.stderr);
    const spans = await wholeTrace(
      otlp,
      traceId,
      (t) =>
        t.some((s) => s.service === 'berth' && s.name === 'berth run') &&
        t.some((s) => s.name === 'runc create'),
    );
    const root = spans.find((s) => s.parentSpanId === '');
    expect(root).toMatchObject({
      service: 'berth',
      name: 'berth run',
      status: { code: OtlpStatus.error },
      attributes: { 'process.exit.code': 127 },
    });
    const create = spans.find((s) => s.service === 'shim' && s.name === 'runc create');
    expect(create?.status.code).toBe(OtlpStatus.error);
    expect(create?.attributes['process.exit.code']).not.toBe(0);
    expect(create?.events).toContain('exception');
    // The CLI's own client span of the failed call names the error code too.
    const call = spans.find(
      (s) => s.service === 'berth' && s.kind === OtlpKind.client && s.status.code === OtlpStatus.error,
    );
    expect(call?.attributes['berth.error_code'], describeAll(spans)).toBeTruthy();
    expect(call?.events).toContain('exception');
  });
});

/** A collector that accepts connections and never answers. */
async function blackHole(): Promise<{ endpoint: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A span as `berth trace --json` prints it. */
interface StoredSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  service: string;
  attributes: Record<string, unknown>;
  links: { traceId: string; spanId: string }[];
  startUs: number;
  endUs: number;
}

/**
 * True once the background removal of a `run --rm` container is all in the store: its snapshot
 * removed, then the container's lock released (the removal's last step, after the snapshot's).
 */
function removed(spans: StoredSpan[]) {
  const task = spans.filter((s) => s.service === 'task-service');
  const snapshotRemoved = task.find((s) => s.name === 'snapshot-service/remove' && s.kind === 2);
  return (
    snapshotRemoved !== undefined &&
    spans.some(
      (s) => s.service === 'snapshot-service' && s.name === 'snapshot-service/remove' && s.kind === 1,
    ) &&
    // Start times are whole milliseconds: the release starts no earlier than the removal's start.
    task.some(
      (s) =>
        s.name === 'EVAL delete-if-equal' &&
        String(s.attributes['db.query.text']).includes(':lock:container:') &&
        s.startUs >= snapshotRemoved.startUs,
    )
  );
}

/** The spans of one trace in the span store, once `complete` holds and none is an orphan. */
async function storedTrace(
  stack: Stack,
  traceId: string,
  complete: (spans: StoredSpan[]) => boolean,
): Promise<StoredSpan[]> {
  let last = '';
  return waitFor(`trace ${traceId} in the span store`, async () => {
    const r = await stack.berth('trace', traceId, '--json');
    last = r.stdout + r.stderr;
    if (r.code !== 0) return undefined;
    const got = JSON.parse(r.stdout) as StoredSpan[];
    return complete(got) && orphans(got).length === 0 && unanswered(got).length === 0 ? got : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}\n${last}`);
  });
}

describe('without a collector', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await f.addStack();
  }, 120_000);

  it('berth run is kept in the span store and berth trace --last draws it down to runc', async () => {
    const run = await stack.berth('--trace', 'run', '--rm', image, 'true');
    expect(run.code, run.stderr).toBe(0);
    const traceId = traceIdOf(run.stderr);
    let last = '';
    // The services write their spans every 200 ms: wait until the store holds the whole trace.
    const spans = await waitFor('the run in the span store', async () => {
      const r = await stack.berth('trace', '--last', '--json');
      last = r.stdout + r.stderr;
      if (r.code !== 0) return undefined;
      const got = JSON.parse(r.stdout) as StoredSpan[];
      const done =
        got.some((s) => s.name === 'task exit') &&
        got.some((s) => s.name === 'runc delete') &&
        got.some((s) => s.name === 'layer apply') &&
        removed(got) &&
        orphans(got).length === 0 &&
        unanswered(got).length === 0;
      return done ? got : undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${last}`);
    });
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([traceId]));
    // Redis scripts and transactions are db spans under the request that sent them, with the
    // keys but never the values (the shim's start stores this very traceparent: not shown).
    const db = spans.filter((s) => s.attributes['db.system'] === 'redis');
    const parentName = (s: StoredSpan) => spans.find((p) => p.spanId === s.parentSpanId)?.name;
    const transition = db.find((s) => s.name === 'EVAL shim transition' && parentName(s) === 'shim/create');
    expect(transition, db.map((s) => `${s.name} <- ${parentName(s)}`).join('\n')).toBeDefined();
    expect(transition).toMatchObject({
      kind: 2,
      service: 'shim',
      attributes: { 'db.operation.name': 'EVAL', 'db.stored_procedure.name': 'shim transition' },
    });
    expect(String(transition?.attributes['db.query.text'])).toMatch(/^EVAL \? 1 berth:v1:\S+ \?/);
    expect(db.some((s) => s.service === 'snapshot-service' && /^EVAL snapshot /.test(s.name))).toBe(true);
    for (const s of db) expect(JSON.stringify(s.attributes), s.name).not.toContain(traceId);
    for (const svc of ['berth', 'image-service', 'snapshot-service', 'task-service', 'shim']) {
      expect(
        spans.some((s) => s.service === svc),
        svc,
      ).toBe(true);
    }
    const tree = await stack.berth('trace', traceId.slice(0, 8));
    expect(tree.code, tree.stderr).toBe(0);
    expect(tree.stdout).toContain(`trace ${traceId}  berth run`);
    expect(tree.stdout).toMatch(/shim\s+runc create \[exit=0\]/);
    expect(tree.stdout).toMatch(/image-service\s+GET \(client\) \[http=200\]/);
    expect(tree.stdout).not.toContain('parent is not in the store');
    expect(await stack.berth('trace', '--op', 'run')).toMatchObject({ code: 0, stdout: tree.stdout });
    // The store is the bounded ring of files under the state root.
    expect(readdirSync(join(stack.stateRoot, 'traces'))).toContain('spans.jsonl');

    // The services' logs: an access line per request with its trace id, and no key twice in a line
    // (the shim once wrote the container's pid over its own).
    for (const child of stack.state()?.children.filter((c) => c.kind === 'service') ?? []) {
      const text = readFileSync(child.logFile, 'utf8');
      for (const line of text.split('\n').filter((l) => l.startsWith('{'))) {
        const keys = topLevelKeys(line);
        expect(new Set(keys).size, `${child.name}: ${line}`).toBe(keys.length);
      }
    }
    const shimLog = stack.state()?.children.find((c) => c.name === 'shim')?.logFile ?? '';
    const access = readFileSync(shimLog, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'request' && l.trace_id === traceId);
    // The task is created and started by one `create`: no `start` request.
    expect(access.map((l) => l.op)).toEqual(expect.arrayContaining(['create', 'delete']));
    expect(access.map((l) => l.op)).not.toContain('start');
    for (const a of access) {
      expect(a).toMatchObject({ level: 30, service: 'shim' });
      // The removal asks the shim whether it still holds a task the task-service never recorded:
      // "none" is a NOT_FOUND answer to `state`. Every other request of the run succeeds.
      expect(a.op === 'state' ? ['OK', 'NOT_FOUND'] : ['OK'], `${String(a.op)}`).toContain(a.outcome);
    }
  });

  it('berth stop records the exit it caused in its own trace; the run that started it shows it too', async () => {
    // A process that exits 7 on SIGTERM: the stop's first signal is the cause of the exit.
    const run = await stack.berth(
      '--trace',
      'run',
      '-d',
      image,
      'sh',
      '-c',
      'trap "exit 7" TERM; while :; do sleep 0.1; done',
    );
    expect(run.code, run.stderr).toBe(0);
    const id = run.stdout.trim();
    const runTrace = traceIdOf(run.stderr);
    const stop = await stack.berth('--trace', 'stop', '-t', '30', id);
    expect(stop.code, stop.stderr).toBe(0);
    const stopTrace = traceIdOf(stop.stderr);
    expect(stopTrace).not.toBe(runTrace);

    const spans = await storedTrace(
      stack,
      stopTrace,
      (t) =>
        t.some((s) => s.name === 'task exit') &&
        t.some((s) => s.service === 'berth' && s.name === 'process berth.events.tasks.exit'),
    );
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const exit = spans.find((s) => s.service === 'shim' && s.name === 'task exit') as StoredSpan;
    expect(exit.attributes).toMatchObject({ 'process.exit.code': 7, 'berth.container.id': id });
    // Under the kill that caused it, announced from there, consumed by the stop that waited.
    expect(byId.get(exit.parentSpanId)).toMatchObject({ service: 'shim', name: 'shim/kill', kind: 1 });
    const producer = spans.find((s) => s.kind === 3 && s.parentSpanId === exit.spanId);
    expect(producer?.name).toBe('publish berth.events.tasks.exit');
    const waited = spans.find(
      (s) => s.service === 'berth' && s.kind === 4 && s.name === 'process berth.events.tasks.exit',
    );
    expect(waited?.links).toContainEqual(expect.objectContaining({ spanId: producer?.spanId }));
    expect(spans.find((s) => s.parentSpanId === '')).toMatchObject({ name: 'berth stop' });

    // The run's trace shows the exit too, linked to where it was announced.
    const ran = await storedTrace(stack, runTrace, (t) => t.some((s) => s.name === 'task exit'));
    const echo = ran.find((s) => s.name === 'task exit') as StoredSpan;
    expect(echo.attributes['process.exit.code']).toBe(7);
    expect(echo.links).toContainEqual(expect.objectContaining({ traceId: stopTrace, spanId: exit.spanId }));
    expect(ran.some((s) => s.kind === 3 && s.name === 'publish berth.events.tasks.exit')).toBe(false);
    await stack.berth('rm', id);
  });

  it('a collector that never answers costs a command only the export bound', async () => {
    const hole = await blackHole();
    try {
      const timed = async (env: NodeJS.ProcessEnv) => {
        const t0 = performance.now();
        const r = await runBerth(['images'], { env: { ...stack.env, ...env } });
        expect(r.code, r.stderr).toBe(0);
        return performance.now() - t0;
      };
      const quiet: number[] = [];
      const stuck: number[] = [];
      for (let i = 0; i < 3; i++) {
        quiet.push(await timed({}));
        stuck.push(await timed({ OTEL_EXPORTER_OTLP_ENDPOINT: hole.endpoint }));
      }
      // Before the bound, every command waited 2 s for the collector.
      expect(Math.min(...stuck) - Math.min(...quiet)).toBeLessThan(1400);
      // The spans are not lost for it: the store has the command.
      const last = await stack.berth('trace', '--last');
      expect(last.stdout).toContain('berth images');
    } finally {
      await hole.close();
    }
  });
});
