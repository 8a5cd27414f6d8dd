import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type Berth, BerthError, Code, connect, type PullProgress, type TaskExit } from '@berth/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCommand } from '../harness/command.js';
import { startJwtNats } from '../harness/nats-jwt.js';
import { waitFor } from '../harness/stack.js';
import { EXAMPLES, type SdkStack, startProgram, startSdkStack } from './sdk-stack.js';

// The SDK's own calls, then the programs in examples/ use only @berth/client; here each runs against a real stack (`berth
// up`, real runc/conmon) and a local registry, and its output is checked.
let s: SdkStack;

beforeAll(async () => {
  s = await startSdkStack();
}, 180_000);
afterAll(async () => s?.stop(), 120_000);

const example = (name: string, args: string[], input?: string) =>
  startProgram(join(EXAMPLES, name), args, {
    env: s.env,
    cwd: EXAMPLES,
    ...(input !== undefined ? { input } : {}),
  });

async function containerIds(): Promise<string[]> {
  const r = await s.stack.berth('ps', '-aq');
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.split(/\s+/).filter(Boolean);
}

describe('the SDK', () => {
  let berth: Berth;
  beforeAll(async () => {
    berth = await connect({ natsUrl: s.stack.natsUrl, node: s.stack.nodeId });
  });
  afterAll(async () => berth?.close());

  it('reports the health of every service of the node', async () => {
    const health = await berth.health();
    expect(health.map((h) => [h.service, h.ok])).toEqual([
      ['image-service', true],
      ['snapshot-service', true],
      ['shim', true],
      ['task-service', true],
    ]);
    expect(health.find((h) => h.service === 'shim')?.info?.node).toBe(s.stack.nodeId);
  });

  it('fails to connect with UNAUTHENTICATED on bad credentials and UNAVAILABLE with no server', async () => {
    const bare = s.stack.natsUrl.replace(/\/\/[^@/]*@/, '//');
    const denied = await connect({
      natsUrl: bare,
      node: s.stack.nodeId,
      credentials: { user: 'nobody', password: 'wrong' },
    }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(BerthError);
    expect((denied as BerthError).code).toBe(Code.UNAUTHENTICATED);
    expect((denied as BerthError).message).not.toContain('wrong');
    const none = await connect({ natsUrl: 'nats://127.0.0.1:1', node: 'n1', timeoutMs: 2000 }).catch(
      (e) => e,
    );
    expect((none as BerthError).code).toBe(Code.UNAVAILABLE);
    const bad = await connect({ natsUrl: bare, node: 'no spaces' }).catch((e) => e);
    expect((bad as BerthError).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('pulls with progress (iterator and callback), pushes, exports, imports, lists, gets, tags and removes images', async () => {
    const ref = `${s.registry.host}/sdk/busybox:1`;
    const seen: PullProgress[] = [];
    const t = berth.images.pullWithProgress(ref, { onProgress: (p) => seen.push(p) });
    const phases: string[] = [];
    for await (const p of t) phases.push(p.phase);
    const reply = await t.result;
    expect(reply.unpack).toBe('done');
    expect(phases.at(-1)).toBe('done');
    expect(seen.map((p) => p.phase)).toEqual(phases);
    expect(reply.image.chainId).toMatch(/^sha256:/);

    const tagged = await berth.images.tag(reply.image.name, 'sdk.test/tagged:1');
    expect(tagged.target.digest).toBe(reply.image.target.digest);
    expect((await berth.images.list()).map((i) => i.name)).toEqual(
      expect.arrayContaining([reply.image.name, 'sdk.test/tagged:1']),
    );
    expect((await berth.images.get('sdk.test/tagged:1')).configDigest).toBe(reply.image.configDigest);
    await berth.images.remove('sdk.test/tagged:1');
    const gone = await berth.images.get('sdk.test/tagged:1').catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(BerthError);
    expect((gone as BerthError).code).toBe(Code.NOT_FOUND);
    // Another namespace has its own images; ensure pulls there once, then finds it.
    const other = berth.withNamespace('sdk-other');
    expect(await other.images.list()).toEqual([]);
    const ensured = await other.images.ensure(ref);
    expect(ensured.target.digest).toBe(reply.image.target.digest);
    expect((await other.images.ensure(ref)).createdAt).toBe(ensured.createdAt);
    await other.images.remove(ref);

    // Push to another repository with progress; the registry then serves the same manifest.
    const pushed = `${s.registry.host}/sdk/pushed:1`;
    const push = berth.images.push(reply.image.name, { ref: pushed });
    const pushPhases: string[] = [];
    for await (const p of push) pushPhases.push(p.phase);
    const pr = await push.result;
    expect(pushPhases.length).toBeGreaterThan(0);
    expect(pr.ref).toBe(pushed);
    const inspect = JSON.parse(
      execFileSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${pushed}`]).toString(),
    );
    expect(inspect.config.digest).toBe(reply.image.configDigest);

    // Export to a file on the node and import it back under another name.
    const tar = join(s.stack.root, 'sdk-export.tar');
    expect((await berth.images.export([reply.image.name], tar)).size).toBeGreaterThan(0);
    const imported = await berth.images.import(tar, { name: 'sdk.test/imported:1' });
    expect(imported.map((i) => i.configDigest)).toContain(reply.image.configDigest);

    const snap = await berth.snapshots.stat(reply.image.chainId as string);
    expect(snap.kind).toBe('committed');
    expect((await berth.snapshots.list()).map((x) => x.name)).toContain(snap.name);
    expect((await berth.snapshots.usage(snap.name)).size).toBeGreaterThan(0);
  });

  it('runs a container, execs in it, samples stats, kills it and sees the exit as an event', async () => {
    const exits = await berth.events.exits();
    const { container } = await berth.containers.run({
      image: s.image,
      cmd: ['sleep', '60'],
      labels: { sdk: '1' },
    });
    try {
      expect(container.node).toBe(s.stack.nodeId);
      expect((await berth.containers.list({ labels: { sdk: '1' } })).map((c) => c.container.id)).toEqual([
        container.id,
      ]);
      const ex = await berth.tasks.exec(container.id, ['sh', '-c', 'echo out; echo err >&2; exit 5']);
      expect([ex.exitCode, ex.stdout, ex.stderr]).toEqual([5, 'out\n', 'err\n']);
      const stats = await berth.tasks.stats(container.id);
      expect(stats.pids.current).toBeGreaterThan(0);
      expect(stats.memory.usageBytes).toBeGreaterThan(0);
      expect((await berth.tasks.pids(container.id)).length).toBeGreaterThan(0);
      await berth.tasks.kill(container.id, { signal: 'SIGKILL' });
      const exit = await berth.tasks.wait(container.id);
      expect(exit.exitCode).toBe(137);
      let event: TaskExit | undefined;
      for await (const e of exits) {
        if (e.id === container.id && !e.execId) {
          event = e;
          break;
        }
      }
      expect(event?.exitCode).toBe(137);
      // wait on a stopped task answers at once from the recorded state.
      expect((await berth.tasks.wait(container.id)).exitCode).toBe(137);
    } finally {
      exits.close();
      await berth.containers.delete(container.id, { force: true });
    }
    const gone = await berth.containers.get(container.id).catch((e: unknown) => e);
    expect((gone as BerthError).code).toBe(Code.NOT_FOUND);
  });

  it("from a host without the node's files: exec output, logs and attach over NATS", async () => {
    // A program on another host sees none of the node's files: run one in a mount namespace with
    // the node's state and run roots (logs, exec logs, attach sockets) hidden under empty tmpfs.
    await berth.images.pull(s.image);
    const { container } = await berth.containers.run({
      image: s.image,
      cmd: ['sh', '-c', 'echo hello-log; echo second >&2; exec sleep 60'],
    });
    const { container: reader } = await berth.containers.run({
      image: s.image,
      cmd: ['sh', '-c', 'read x; echo got $x; echo bye >&2'],
      stdin: true,
    });
    try {
      await waitFor('the log to be written', async () => {
        const seen: string[] = [];
        for await (const l of berth.tasks.logs(container.id)) seen.push(l.content);
        return seen.length === 2;
      });
      const script = `
        import { connect } from '@berth/client';
        const berth = await connect({ natsUrl: process.env.BERTH_NATS_URL, node: process.env.BERTH_NODE_ID });
        const id = ${JSON.stringify(container.id)};
        const ex = await berth.tasks.exec(id, ['sh', '-c', 'echo remote; echo e >&2; exit 6']);
        const logs = [];
        for await (const l of berth.tasks.logs(id)) logs.push([l.stream, l.content]);
        const a = await berth.tasks.attach(${JSON.stringify(reader.id)}, { stdin: true });
        await a.write('hi\\n');
        const out = { stdout: '', stderr: '' };
        for await (const c of a.output()) out[c.stream] += Buffer.from(c.data).toString();
        console.log(JSON.stringify({ ex: [ex.exitCode, ex.stdout, ex.stderr], logs, out }));
        await berth.close();
      `;
      const hide =
        'mount -t tmpfs none "$0" && mount -t tmpfs none "$1" && exec "$2" --input-type=module -e "$3"';
      const r = await startCommand(
        'unshare',
        [
          '-m',
          '--propagation',
          'private',
          'sh',
          '-c',
          hide,
          s.stack.stateRoot,
          s.stack.runRoot,
          process.execPath,
          script,
        ],
        { env: s.env, cwd: EXAMPLES },
      ).done;
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({
        ex: [6, 'remote\n', 'e\n'],
        logs: [
          ['stdout', 'hello-log'],
          ['stderr', 'second'],
        ],
        out: { stdout: 'got hi\n', stderr: 'bye\n' },
      });
      expect((await berth.tasks.wait(reader.id)).exitCode).toBe(0);
    } finally {
      await berth.containers.delete(container.id, { force: true });
      await berth.containers.delete(reader.id, { force: true });
    }
  });

  it('holds a lease while it works, and ends it afterwards', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const seen = await berth.leases.with(
      async (l) => {
        await berth.leases.add(l.id, { content: [digest], snapshots: ['sdk-snap'] });
        return berth.leases.list();
      },
      { labels: { job: 'sdk' } },
    );
    expect(seen.map((l) => [l.labels, l.content, l.snapshots])).toEqual([
      [{ job: 'sdk' }, [digest], ['sdk-snap']],
    ]);
    expect(await berth.leases.list()).toEqual([]);
    const taken = await berth.leases.create({ id: 'sdk-lease' });
    await expect(berth.leases.create({ id: 'sdk-lease' })).rejects.toMatchObject({
      code: Code.ALREADY_EXISTS,
    });
    await berth.leases.delete(taken.id);
  });

  it('filters events by topic and namespace', async () => {
    const stream = berth.events.subscribe({ topics: ['containers.*'] });
    const other = berth.withNamespace('sdk-other').events.subscribe({ topics: ['containers.>'] });
    await berth.events.ready();
    const c = await berth.containers.create({ image: s.image, cmd: ['true'] });
    await berth.containers.delete(c.id);
    const topics: string[] = [];
    for await (const env of stream) {
      expect(env.namespace).toBe('default');
      topics.push(env.topic);
      if (env.topic === 'containers.delete') break;
    }
    expect(topics).toEqual(['containers.create', 'containers.delete']);
    other.close();
    // The other namespace's stream got nothing: closing it ends it with nothing queued.
    expect(await other.next()).toEqual({ value: undefined, done: true });
    expect(() => berth.events.subscribe({ topics: ['tasks.>.x'] })).toThrow(/token ">"/);
  });
});

describe('connect with a NATS credentials file', () => {
  it('gets in with the .creds file, is refused without it, and names a missing file', async () => {
    const server = await startJwtNats();
    try {
      const berth = await connect({
        natsUrl: server.url,
        credentials: { credsFile: server.credsFile },
        node: 'n1',
      });
      try {
        // Connected: with no services on this server every info is UNAVAILABLE, not an auth error.
        const health = await berth.health({ timeoutMs: 2000 });
        expect(health.map((h) => h.error?.code)).toEqual(Array(4).fill(Code.UNAVAILABLE));
      } finally {
        await berth.close();
      }
      const refused = await connect({ natsUrl: server.url, node: 'n1' }).catch((e: unknown) => e);
      expect((refused as BerthError).code).toBe(Code.UNAUTHENTICATED);
      const missing = await connect({
        natsUrl: server.url,
        credentials: { credsFile: '/nonexistent/user.creds' },
        node: 'n1',
      }).catch((e: unknown) => e);
      expect((missing as BerthError).code).toBe(Code.INVALID_ARGUMENT);
      expect((missing as BerthError).message).toContain('/nonexistent/user.creds');
    } finally {
      await server.stop();
    }
  });
});

describe('examples', () => {
  it('run-container pulls the image, runs it and prints its output and exit code', async () => {
    const r = await example('run-container.mjs', [
      s.image,
      'sh',
      '-c',
      'echo hello from berth; echo oops >&2; exit 4',
    ]).done;
    expect(r.stdout).toBe('hello from berth\n');
    expect(r.stderr).toContain(`pull ${s.image}: done`);
    expect(r.stderr).toContain('oops\n');
    expect(r.stderr).toMatch(/container [0-9a-f]{12} exited with 4/);
    expect(r.code).toBe(4);
    // The image is on the node now and the container was removed.
    const images = await s.stack.berth('images');
    expect(images.stdout).toContain('sdk/busybox');
    expect(await containerIds()).toEqual([]);
  });

  it('follow-exits prints the exits of containers run by someone else', async () => {
    const p = example('follow-exits.mjs', ['2']);
    await waitFor('follow-exits to subscribe', () => p.stderr().includes('listening for task exits'));
    const a = await s.stack.berth('run', '--rm', s.image, 'sh', '-c', 'exit 7');
    expect(a.code).toBe(7);
    const id = (await s.stack.berth('run', '-d', s.image, 'true')).stdout.trim();
    try {
      const r = await p.done;
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(
        new RegExp(`^exit [0-9a-f]{12} code=7( reason=\\w+)? node=${s.stack.nodeId}$`),
      );
      expect(lines[1]).toMatch(
        new RegExp(`^exit ${id.slice(0, 12)} code=0( reason=\\w+)? node=${s.stack.nodeId}$`),
      );
    } finally {
      await s.stack.berth('rm', '-f', id);
    }
  });

  it('jobs runs one container per line of stdin, at most N at a time', async () => {
    const input = ['echo one', 'echo two; exit 3', 'sleep 0.5; echo three', 'echo four >&2', ''].join('\n');
    const r = await example('jobs.mjs', [s.image, '2'], input).done;
    const lines = r.stdout.trim().split('\n');
    for (const [n, out, code] of [
      [1, 'one', 0],
      [2, 'two', 3],
      [3, 'three', 0],
      [4, 'four', 0],
    ] as const) {
      expect(lines).toContain(`[job ${n}] ${out}`);
      expect(lines).toContain(`[job ${n}] exit=${code}`);
    }
    // The runner never had more than 2 jobs in flight: count starts minus exits along the output.
    let inFlight = 0;
    let most = 0;
    for (const l of lines) {
      if (/^\[job \d+\] start/.test(l)) most = Math.max(most, ++inFlight);
      if (/^\[job \d+\] exit=/.test(l)) inFlight--;
    }
    expect(most).toBe(2);
    expect(lines.at(-1)).toBe('4 jobs, 1 failed');
    expect(r.code).toBe(1);
    expect(await containerIds()).toEqual([]);
  });
});
