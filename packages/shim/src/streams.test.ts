import { BerthError, Code, parseCriLine, ShimApi, StreamChannel } from '@berth/api';
import type { NatsStream } from '@berth/kit/stream';
import { callStream } from '@berth/kit/stream-call';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindRootfs, makeSpec, newId, type ShimWorld, startWorld } from './testing/fixture.js';

// `logs` and `attach` over NATS against a real shim agent process, runc and conmon: what a CLI
// or SDK on another node gets, read through the kit's stream like they read it.

const ns = 'streams';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  await w?.close();
});

async function started(args: string[], io: { terminal?: boolean; stdin?: boolean } = {}) {
  const id = newId();
  const spec = await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${id}` });
  const st = await w.client.create({ namespace: ns, id, spec, rootfs: bindRootfs(w.rootfs), ...io });
  return { id, st };
}

function logs(
  id: string,
  o: { follow?: boolean; tail?: number; window?: number; deadAfterMs?: number } = {},
) {
  return callStream(
    w.nc,
    ShimApi,
    'logs',
    {
      namespace: ns,
      id,
      follow: o.follow ?? false,
      ...(o.tail !== undefined ? { tail: o.tail } : {}),
    },
    {
      node: w.node,
      namespace: ns,
      what: `logs of ${id}`,
      ...(o.window ? { window: o.window } : {}),
      ...(o.deadAfterMs ? { heartbeatMs: 100, deadAfterMs: o.deadAfterMs } : {}),
    },
  );
}

/**
 * The logical lines a log stream carries (conmon splits long writes into P chunks ended by an F
 * chunk), with the largest buffer seen on the way.
 */
async function lines(s: NatsStream): Promise<{ text: string[]; peak: number }> {
  const text: string[] = [];
  let carry = '';
  let partial = '';
  let peak = 0;
  for await (const c of s.chunks()) {
    expect(c.channel).toBe(StreamChannel.log);
    peak = Math.max(peak, s.buffered());
    const parts = (carry + Buffer.from(c.data).toString()).split('\n');
    carry = parts.pop() ?? '';
    for (const p of parts) {
      const l = parseCriLine(p);
      if (!l) continue;
      partial += l.content;
      if (l.full) {
        text.push(partial);
        partial = '';
      }
    }
  }
  expect(carry).toBe('');
  return { text, peak };
}

describe('logs over NATS', () => {
  it('sends a stopped task its whole log, or its last lines', async () => {
    const { id } = await started(['sh', '-c', 'for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done']);
    await w.client.start({ namespace: ns, id });
    await w.client.wait({ namespace: ns, id });
    const all = await lines(await logs(id));
    expect(all.text.filter((l) => l.startsWith('out'))).toEqual([
      'out 1',
      'out 2',
      'out 3',
      'out 4',
      'out 5',
    ]);
    expect(all.text).toHaveLength(10);
    const tail = await lines(await logs(id, { tail: 3 }));
    expect(tail.text).toEqual(all.text.slice(-3));
    expect((await lines(await logs(id, { tail: 0 }))).text).toEqual([]);
    await w.client.delete({ namespace: ns, id });
  });

  it('follows a fast writer to its exit through a 2-frame window, losing no line', async () => {
    const { id } = await started([
      'sh',
      '-c',
      'i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done',
    ]);
    const s = await logs(id, { follow: true, window: 2 });
    await w.client.start({ namespace: ns, id });
    const got = await lines(s);
    expect(got.text).toHaveLength(20000);
    expect(got.text[0]).toBe('line 0');
    expect(got.text[19999]).toBe('line 19999');
    expect(got.text.every((l, i) => l === `line ${i}`)).toBe(true);
    expect(got.peak).toBeLessThanOrEqual(2);
    expect((await w.client.state({ namespace: ns, id })).status).toBe('stopped');
    await w.client.delete({ namespace: ns, id });
  });

  it('names the node when there is no such container', async () => {
    const err = await logs('ghost').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe(Code.NOT_FOUND);
    expect((err as BerthError).message).toBe(
      `no log of container "ghost" in namespace "${ns}" on node "${w.node}"`,
    );
  });
});

describe('attach over NATS', () => {
  it('relays stdin in and stdout/stderr out; ending stdin ends cat', async () => {
    const { id } = await started(['sh', '-c', 'cat; echo done >&2'], { stdin: true });
    const s = await callStream(
      w.nc,
      ShimApi,
      'attach',
      { namespace: ns, id, stdin: true },
      { node: w.node, namespace: ns, what: 'attach' },
    );
    await w.client.start({ namespace: ns, id });
    await s.write(Buffer.from('hello over nats\n'), StreamChannel.stdin);
    await s.end();
    const out: Record<number, string> = { [StreamChannel.stdout]: '', [StreamChannel.stderr]: '' };
    for await (const c of s.chunks()) out[c.channel] += Buffer.from(c.data).toString();
    expect(out[StreamChannel.stdout]).toBe('hello over nats\n');
    expect(out[StreamChannel.stderr]).toBe('done\n');
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 0 });
    await w.client.delete({ namespace: ns, id });
  });

  it('refuses a stopped task, naming it and the node', async () => {
    const { id } = await started(['true']);
    await w.client.start({ namespace: ns, id });
    await w.client.wait({ namespace: ns, id });
    await expect(
      callStream(
        w.nc,
        ShimApi,
        'attach',
        { namespace: ns, id },
        { node: w.node, namespace: ns, what: 'attach' },
      ),
    ).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: `container "${id}" on node "${w.node}" is not running: nothing to attach to`,
    });
    await w.client.delete({ namespace: ns, id });
  });
});

describe('a shim that dies mid-stream', () => {
  it('fails a follower with UNAVAILABLE instead of leaving it waiting', async () => {
    const { id } = await started(['sleep', '1000']);
    await w.client.start({ namespace: ns, id });
    const s = await logs(id, { follow: true, deadAfterMs: 1000 });
    const reading = lines(s).then(
      () => undefined,
      (e: unknown) => e,
    );
    await w.killAgent();
    const err = (await reading) as BerthError;
    expect(err).toBeInstanceOf(BerthError);
    expect(err.code).toBe(Code.UNAVAILABLE);
    expect(err.message).toContain(`logs of ${id}: the other end sent nothing for 1000 ms`);
    await w.startAgent();
    await w.client.kill({ namespace: ns, id, signal: 'KILL', all: true });
    await w.client.wait({ namespace: ns, id });
    await w.client.delete({ namespace: ns, id });
  });
});
