import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCriLine, readCriStreams } from './cri-log.js';
import {
  bindRootfs,
  codeOf,
  createTask,
  makeSpec,
  newId,
  type ShimWorld,
  startWorld,
  waitForLog,
} from './testing/fixture.js';

const ns = 'default';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  await w?.close();
});

async function run(args: string[], opts: { memoryLimit?: number } = {}) {
  const { id, st: created } = await createTask(w, ns, args, { ...opts, start: false });
  return { id, created };
}

describe('task lifecycle on real runc under conmon', () => {
  it('creates, starts, waits with the exit code, announces the exit, deletes', async () => {
    const { id, created } = await run(['sh', '-c', 'echo hello; echo oops >&2; exit 7']);
    expect(created.status).toBe('created');
    expect(created.pid).toBeGreaterThan(0);
    expect(created.monitorPid).toBeGreaterThan(0);
    const started = await w.client.start({ namespace: ns, id });
    expect(started.status).toBe('running');
    const exit = await w.client.wait({ namespace: ns, id }, { timeoutMs: 20_000 });
    expect(exit.exitCode).toBe(7);
    expect(Date.parse(exit.exitedAt)).toBeGreaterThan(0);
    const ev = await w.nextExit((e) => e.id === id);
    expect(ev).toMatchObject({ namespace: ns, id, exitCode: 7, pid: created.pid, node: w.node });
    const st = await w.client.state({ namespace: ns, id });
    expect(st).toMatchObject({ status: 'stopped', exitCode: 7 });
    expect(st.attachPath).toBeUndefined();

    // The log is CRI format, complete, written by conmon.
    const lines = (await readFile(st.logPath!, 'utf8')).trimEnd().split('\n');
    const parsed = lines.map((l) => parseCriLine(l));
    expect(parsed.every(Boolean)).toBe(true);
    for (const l of lines)
      expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) (stdout|stderr) [PF] /);
    expect(parsed.map((p) => [p?.stream, p?.full, p?.content])).toEqual(
      expect.arrayContaining([
        ['stdout', true, 'hello'],
        ['stderr', true, 'oops'],
      ]),
    );

    const del = await w.client.delete({ namespace: ns, id });
    expect(del).toMatchObject({ status: 'stopped', exitCode: 7 });
    expect(await codeOf(w.client.state({ namespace: ns, id }))).toBe('NOT_FOUND');
    expect(await codeOf(stat(del.bundle!))).toBe('ENOENT');
    expect(await codeOf(w.client.delete({ namespace: ns, id }))).toBe('NOT_FOUND');
  });

  it("runs runc create from the shim's sealed copy of runc: runc init makes no copy of its own", async () => {
    const { id, created } = await run(['true']);
    // runc init, waiting on its exec fifo, runs from the copy it was started from: the shim's
    // memfd ("runc"), not a copy or bind mount of its own (a memfd "runc_cloned:...", or "/").
    expect(await readlink(`/proc/${created.pid}/exe`)).toBe('/memfd:runc (deleted)');
    await w.client.delete({ namespace: ns, id });
  });

  it('writes partial lines as P and keeps output of a process that exits at once', async () => {
    const { id } = await run(['printf', 'no newline']);
    await w.client.start({ namespace: ns, id });
    expect((await w.client.wait({ namespace: ns, id })).exitCode).toBe(0);
    const st = await w.client.state({ namespace: ns, id });
    const l = parseCriLine((await readFile(st.logPath!, 'utf8')).trimEnd());
    expect(l).toMatchObject({ stream: 'stdout', full: false, content: 'no newline' });
    await w.client.delete({ namespace: ns, id });
  });

  it('the log is complete once the exit is reported (conmon drains stdio before the exit file)', async () => {
    const { id } = await run([
      'sh',
      '-c',
      'i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; printf end',
    ]);
    await w.client.start({ namespace: ns, id });
    expect((await w.client.wait({ namespace: ns, id })).exitCode).toBe(0);
    const st = await w.client.state({ namespace: ns, id });
    // conmon reads 8 KiB at a time: a line cut by a read is a P chunk followed by its F rest.
    const { stdout } = await readCriStreams(st.logPath!);
    const expected = `${Array.from({ length: 3000 }, (_, i) => `line-${i}`).join('\n')}\nend`;
    expect(stdout).toBe(expected);
    await w.client.delete({ namespace: ns, id });
  });

  it('a negative oomScoreAdj (needs CAP_SYS_RESOURCE, absent here) is raised instead of failing create', async () => {
    const { id } = await createTask(w, ns, ['cat', '/proc/self/oom_score_adj'], {
      editSpec: (spec) => {
        (spec.process as Record<string, unknown>).oomScoreAdj = -500;
      },
    });
    expect((await w.client.wait({ namespace: ns, id })).exitCode).toBe(0);
    const { stdout } = await readCriStreams((await w.client.state({ namespace: ns, id })).logPath!);
    const own = Number((await readFile('/proc/self/oom_score_adj', 'utf8')).trim());
    const granted = Number(stdout.trim());
    expect(granted === -500 || granted >= Math.min(own, 0)).toBe(true);
    await w.client.delete({ namespace: ns, id });
  });

  it('kills a running task; a second kill of the dead task is not an error (rm -f)', async () => {
    // PID 1 of a pid namespace ignores signals it has no handler for: trap TERM explicitly.
    const { id } = await run(['sh', '-c', 'trap "exit 3" TERM; echo ready; while true; do sleep 0.05; done']);
    const st = await w.client.start({ namespace: ns, id });
    await waitForLog(st.logPath!, 'ready');
    expect(await codeOf(w.client.delete({ namespace: ns, id }))).toBe('FAILED_PRECONDITION');
    expect(await w.client.kill({ namespace: ns, id, signal: 'SIGTERM', all: false })).toEqual({
      delivered: true,
    });
    const exit = await w.client.wait({ namespace: ns, id });
    expect(exit.exitCode).toBe(3);
    expect(await w.client.kill({ namespace: ns, id, signal: 'KILL', all: true })).toEqual({
      delivered: false,
    });
    expect(await codeOf(w.client.kill({ namespace: ns, id, signal: 'SIGNOPE', all: false }))).toBe(
      'INVALID_ARGUMENT',
    );
    await w.client.delete({ namespace: ns, id });
  });

  it('deletes a created task that never started (its init is killed, nothing left)', async () => {
    const { id, created } = await run(['sleep', '1000']);
    const del = await w.client.delete({ namespace: ns, id });
    expect(del.status).toBe('stopped');
    expect(await codeOf(stat(created.bundle!))).toBe('ENOENT');
    expect((await w.client.list({ namespace: ns })).tasks.find((t) => t.id === id)).toBeUndefined();
  });

  it('runs 12 lifecycles at once: every exit code lands on the right task', async () => {
    const results = await Promise.all(
      Array.from({ length: 12 }, async (_, i) => {
        const { id } = await run(['sh', '-c', `echo task-${i}; exit ${i + 1}`]);
        await w.client.start({ namespace: ns, id });
        const exit = await w.client.wait({ namespace: ns, id });
        const { stdout } = await readCriStreams((await w.client.state({ namespace: ns, id })).logPath!);
        await w.client.delete({ namespace: ns, id });
        return { i, code: exit.exitCode, stdout };
      }),
    );
    for (const r of results) expect(r).toEqual({ i: r.i, code: r.i + 1, stdout: `task-${r.i}\n` });
  });

  it('refuses a duplicate id and bad input with codes that name the task', async () => {
    const { id } = await run(['true']);
    const spec = await makeSpec(['true']);
    const dup = w.client.create({
      namespace: ns,
      id,
      spec,
      rootfs: bindRootfs(w.rootfs),
      terminal: false,
      stdin: false,
    });
    await expect(dup).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringContaining(id) });
    const bad = w.client.create({
      namespace: ns,
      id: '../etc',
      spec,
      rootfs: [],
      terminal: false,
      stdin: false,
    });
    await expect(bad).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await codeOf(w.client.state({ namespace: ns, id: newId() }))).toBe('NOT_FOUND');
    await w.client.delete({ namespace: ns, id });
  });

  it('refuses a rootfs that binds a host directory, and creates nothing on the host', async () => {
    // A host directory as the issue's /etc, holding one file: runc made dev/, proc/ ... in it.
    const host = await mkdtemp(join(tmpdir(), 'berth-host-etc-'));
    await writeFile(join(host, 'hosts'), '127.0.0.1 localhost\n');
    try {
      const id = newId();
      const spec = await makeSpec(['true'], { cgroupsPath: `/berth-test/${w.node}/${id}` });
      for (const rootfs of [
        [{ type: 'bind', source: host, options: ['rbind', 'rw'] }],
        [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${w.rootfs}:${host}`] }],
      ]) {
        const err = await w.client
          .create({ namespace: ns, id, spec, rootfs, terminal: false, stdin: false })
          .then(
            () => undefined,
            (e: unknown) => e,
          );
        expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(host) });
        expect(await readdir(host)).toEqual(['hosts']);
        expect(await codeOf(w.client.state({ namespace: ns, id }))).toBe('NOT_FOUND');
        await expect(stat(join(w.stateRoot, 'tasks', ns, id))).rejects.toMatchObject({ code: 'ENOENT' });
      }
    } finally {
      await rm(host, { recursive: true, force: true });
    }
  });

  it('a command not found fails create clearly and leaves no state behind', async () => {
    const id = newId();
    const spec = await makeSpec(['/bin/no-such-command'], { cgroupsPath: `/berth-test/${w.node}/${id}` });
    const p = w.client.create({
      namespace: ns,
      id,
      spec,
      rootfs: bindRootfs(w.rootfs),
      terminal: false,
      stdin: false,
    });
    await expect(p).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/no-such-command/),
    });
    expect(await codeOf(w.client.state({ namespace: ns, id }))).toBe('NOT_FOUND');
    expect(await codeOf(stat(`${w.stateRoot}/tasks/${ns}/${id}`))).toBe('ENOENT');
    expect(await codeOf(stat(`${w.stateRoot}/runc/${ns}/${id}`))).toBe('ENOENT');
    // The id is free again.
    const ok = await w.client.create({
      namespace: ns,
      id,
      spec: await makeSpec(['true']),
      rootfs: bindRootfs(w.rootfs),
      terminal: false,
      stdin: false,
    });
    expect(ok.status).toBe('created');
    await w.client.delete({ namespace: ns, id });
  });
});

describe('start through runc exec fifo', () => {
  it('leaves runc seeing the task running, with its exec fifo gone', async () => {
    const { id } = await run(['sleep', '30']);
    const fifo = join(w.stateRoot, 'runc', ns, id, 'exec.fifo');
    expect((await stat(fifo)).isFIFO()).toBe(true);
    await w.client.start({ namespace: ns, id });
    expect(await codeOf(stat(fifo))).toBe('ENOENT');
    const runcState = JSON.parse(
      execFileSync('runc', ['--root', join(w.stateRoot, 'runc', ns), 'state', id], { encoding: 'utf8' }),
    ) as { status: string };
    expect(runcState.status).toBe('running');
    await w.client.kill({ namespace: ns, id, signal: 'SIGKILL' });
    expect((await w.client.wait({ namespace: ns, id }, { timeoutMs: 20_000 })).exitCode).toBe(137);
    await w.client.delete({ namespace: ns, id });
  });

  it('refuses to start a created task whose init was killed, without hanging', async () => {
    const { id, created } = await run(['sleep', '30']);
    process.kill(created.pid, 'SIGKILL');
    expect(['FAILED_PRECONDITION', 'NOT_FOUND']).toContain(
      await codeOf(w.client.start({ namespace: ns, id })),
    );
    await w.client.delete({ namespace: ns, id });
  });
});
