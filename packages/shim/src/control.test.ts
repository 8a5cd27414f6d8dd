import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { taskPaths } from './domain/paths.js';
import { oomKillsOf } from './runtime/cgroups.js';
import {
  codeOf,
  createTask,
  makeSpec,
  newId,
  removeTask,
  type ShimWorld,
  startWorld,
  waitForLog,
} from './testing/fixture.js';

const ns = 'control';
let w: ShimWorld;

// The agent starts under umask 000, as from a careless shell: what it and conmon make must still
// be writable by their owner only (checked on the exit and OOM files and the logs below).
let umask: number;
beforeAll(async () => {
  umask = process.umask(0);
  w = await startWorld();
});
afterAll(async () => {
  process.umask(umask);
  await w?.close();
});

/** A file's permission bits. */
const modeOf = (path: string) => statSync(path).mode & 0o777;

async function running(args: string[], opts: { memoryLimit?: number; ready?: string } = {}) {
  const { ready, ...rest } = opts;
  const { id, st } = await createTask(w, ns, args, rest);
  if (ready) await waitForLog(st.logPath!, ready);
  return { id, st };
}

const finish = (id: string) => removeTask(w, ns, id);

describe('exec', () => {
  it('runs a process in a running task: output, exit code, tasks.exit with the execId', async () => {
    const { id } = await running(['sleep', '1000']);
    const execId = 'e1';
    const prepared = await w.client.exec({
      namespace: ns,
      id,
      execId,
      process: {
        // No cwd: the shim defaults it to "/" (runc refuses a process without one).
        args: ['sh', '-c', "echo out-$((6*7)) $(pwd); printf '\\377\\n'; echo err >&2; exit 5"],
        env: ['PATH=/bin'],
        user: { uid: 0, gid: 0 },
      },
      terminal: false,
      stdin: false,
    });
    expect(prepared.status).toBe('created');
    const started = await w.client.start({ namespace: ns, id, execId });
    expect(started.pid).toBeGreaterThan(0);
    const exit = await w.client.wait({ namespace: ns, id, execId });
    expect(exit.exitCode).toBe(5);
    expect(await w.nextExit((e) => e.id === id && e.execId === execId)).toMatchObject({
      exitCode: 5,
      execId,
    });
    // Bytes, in base64: the 0xff of a process's output that is not text survives.
    expect(await w.client['exec-output']({ namespace: ns, id, execId })).toEqual({
      stdoutBase64: Buffer.from('out-42 /\n\xff\n', 'latin1').toString('base64'),
      stderrBase64: Buffer.from('err\n').toString('base64'),
      truncated: false,
    });
    expect(
      await codeOf(
        w.client.exec({
          namespace: ns,
          id,
          execId,
          process: { args: ['true'] },
          terminal: false,
          stdin: false,
        }),
      ),
    ).toBe('ALREADY_EXISTS');
    await w.client.delete({ namespace: ns, id, execId });
    expect(await codeOf(w.client.state({ namespace: ns, id, execId }))).toBe('NOT_FOUND');
    await finish(id);
  });

  it("exec-output carries 256 KiB of each stream, within NATS's max_payload, however much was written", async () => {
    const { id } = await running(['sleep', '1000']);
    const execId = 'big';
    await w.client.exec({
      namespace: ns,
      id,
      execId,
      // 600 KiB on each stream: the two in one JSON reply would be over the 1 MiB max_payload.
      process: {
        args: ['sh', '-c', 'yes out | head -c 614400; yes err | head -c 614400 >&2'],
        cwd: '/',
        env: ['PATH=/bin'],
      },
      terminal: false,
      stdin: false,
    });
    await w.client.start({ namespace: ns, id, execId });
    expect((await w.client.wait({ namespace: ns, id, execId })).exitCode).toBe(0);
    const out = await w.client['exec-output']({ namespace: ns, id, execId });
    expect(out.truncated).toBe(true);
    expect(Buffer.from(out.stdoutBase64, 'base64').equals(Buffer.from('out\n'.repeat(65536)))).toBe(true);
    expect(Buffer.from(out.stderrBase64, 'base64').equals(Buffer.from('err\n'.repeat(65536)))).toBe(true);
    await w.client.delete({ namespace: ns, id, execId });
    await finish(id);
  });

  it('an exec of a missing command fails clearly; exec into a stopped task is refused', async () => {
    const { id } = await running(['sleep', '1000']);
    await w.client.exec({
      namespace: ns,
      id,
      execId: 'bad',
      process: { args: ['/bin/nope'], cwd: '/', env: [] },
      terminal: false,
      stdin: false,
    });
    const started = w.client.start({ namespace: ns, id, execId: 'bad' });
    await expect(started).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('nope'),
    });
    expect(await w.client.state({ namespace: ns, id, execId: 'bad' })).toMatchObject({
      status: 'stopped',
      exitCode: 127,
    });
    await finish(id);
    const { id: id2 } = await running(['true']);
    await w.client.wait({ namespace: ns, id: id2 });
    const p = w.client.exec({
      namespace: ns,
      id: id2,
      execId: 'x',
      process: { args: ['true'] },
      terminal: false,
      stdin: false,
    });
    await expect(p).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await w.client.delete({ namespace: ns, id: id2 });
  });
});

describe('control of a live task', () => {
  it('pause and resume freeze and thaw it; pids lists its processes', async () => {
    const { id, st } = await running(['sh', '-c', 'echo ready; while true; do sleep 0.05; done'], {
      ready: 'ready',
    });
    const { pids } = await w.client.pids({ namespace: ns, id });
    expect(pids).toContain(st.pid);
    await w.client.pause({ namespace: ns, id });
    expect((await w.client.state({ namespace: ns, id })).status).toBe('paused');
    expect(await codeOf(w.client.pause({ namespace: ns, id }))).toBe('FAILED_PRECONDITION');
    await w.client.resume({ namespace: ns, id });
    expect((await w.client.state({ namespace: ns, id })).status).toBe('running');
    await finish(id);
  });

  it('kill of a paused task thaws it so the signal acts (rm -f of a paused container)', async () => {
    const { id } = await running(['sh', '-c', 'echo ready; while true; do sleep 0.05; done'], {
      ready: 'ready',
    });
    await w.client.pause({ namespace: ns, id });
    expect(await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true })).toEqual({
      delivered: true,
    });
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 137 });
    await w.client.delete({ namespace: ns, id });
  });

  it("kill answers INTERNAL with runc's message when runc cannot read the task's state, delivered: false once it stopped", async () => {
    const { id } = await running(['sleep', '1000']);
    const layout = hostLayout({ stateRoot: w.stateRoot, runRoot: w.runRoot });
    const stateFile = join(taskPaths(layout, ns, id).runcRoot, id, 'state.json');
    const good = readFileSync(stateFile, 'utf8');
    writeFileSync(stateFile, '{"id": ');
    try {
      // Not "not running" (FAILED_PRECONDITION), which callers take as stopped: the task runs on.
      await expect(w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: false })).rejects.toMatchObject(
        {
          code: 'INTERNAL',
          message: `task "${id}": runc kill failed: unexpected EOF`,
        },
      );
    } finally {
      writeFileSync(stateFile, good);
    }
    expect((await w.client.state({ namespace: ns, id })).status).toBe('running');
    expect(await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: false })).toEqual({
      delivered: true,
    });
    await w.client.wait({ namespace: ns, id });
    expect(await w.client.kill({ namespace: ns, id, signal: 'SIGKILL', all: true })).toEqual({
      delivered: false,
    });
    await w.client.delete({ namespace: ns, id });
  });

  it('stats reads cpu, memory and pids from the cgroup runc made; update changes the limit', async () => {
    const limit = 64 * 1024 * 1024;
    const { id } = await running(['sh', '-c', 'echo ready; while true; do sleep 0.05; done'], {
      memoryLimit: limit,
      ready: 'ready',
    });
    const s = await w.client.stats({ namespace: ns, id });
    expect([1, 2]).toContain(s.cgroupVersion);
    expect(s.cpu.usageNs).toBeGreaterThan(0);
    expect(s.memory.usageBytes).toBeGreaterThan(0);
    expect(s.memory.limitBytes).toBe(limit);
    expect(s.pids.current).toBeGreaterThanOrEqual(1);
    await w.client.update({
      namespace: ns,
      id,
      resources: { memory: { limit: 2 * limit, swap: 2 * limit }, pids: { limit: 50 } },
    });
    const s2 = await w.client.stats({ namespace: ns, id });
    expect(s2.memory.limitBytes).toBe(2 * limit);
    expect(s2.pids.limit).toBe(50);
    await finish(id);
    expect(await codeOf(w.client.stats({ namespace: ns, id }))).toBe('NOT_FOUND');
  });

  it('reopen-log: after the log is rotated away (renamed), conmon writes to a new file at logPath', async () => {
    const { rename, readFile } = await import('node:fs/promises');
    const { id, st } = await running(
      ['sh', '-c', 'echo ready; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.05; done'],
      { ready: 'ready' },
    );
    // containerd's mode: a log collector in the file's group reads it (conmon 2.1.6 makes 0600).
    expect(modeOf(st.logPath!)).toBe(0o640);
    const rotated = `${st.logPath}.1`;
    await rename(st.logPath!, rotated);
    await w.client['reopen-log']({ namespace: ns, id });
    // The new file is there once the call answered (critest reads it at once).
    expect(existsSync(st.logPath!)).toBe(true);
    const deadline = Date.now() + 10_000;
    let fresh = '';
    while (!/tick-\d+/.test(fresh)) {
      if (Date.now() > deadline) throw new Error('no new log file after reopen-log');
      await new Promise((r) => setTimeout(r, 20));
      fresh = await readFile(st.logPath!, 'utf8').catch(() => '');
    }
    expect(await readFile(rotated, 'utf8')).toContain('ready');
    expect(fresh).not.toContain(' ready');
    // conmon's file, renamed over the one the call made: the same mode as the first.
    expect(modeOf(st.logPath!)).toBe(0o640);
    expect(existsSync(`${st.logPath}.tmp`)).toBe(false);
    await finish(id);
  });

  it('reopen-log answers once conmon switched files; two at once leave one 0640 log', async () => {
    const { rename, readFile } = await import('node:fs/promises');
    const { id, st } = await running(
      ['sh', '-c', 'echo ready; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.02; done'],
      { ready: 'ready' },
    );
    const log = st.logPath!;
    for (let round = 1; round <= 3; round++) {
      const rotated = `${log}.${round}`;
      await rename(log, rotated);
      // The kubelet reopens one container at a time; two callers at once must not race each
      // other's `.tmp` (conmon would make its own, 0600 up to 2.1.12).
      await Promise.all([
        w.client['reopen-log']({ namespace: ns, id }),
        w.client['reopen-log']({ namespace: ns, id }),
      ]);
      expect(existsSync(`${log}.tmp`)).toBe(false);
      expect(modeOf(log)).toBe(0o640);
      // conmon has closed the rotated file when the call answers: it takes no line after that.
      const closed = await readFile(rotated, 'utf8');
      const last = Number(/tick-(\d+)\n$/.exec(closed)?.[1] ?? 0);
      await waitForLog(log, `tick-${last + 3}`);
      expect(await readFile(rotated, 'utf8')).toBe(closed);
    }
    // A reopen with nothing rotated (the second of two callers, its file already the new one)
    // keeps what the log holds: the monitor already writes to the file the path names.
    const before = await readFile(log, 'utf8');
    await w.client['reopen-log']({ namespace: ns, id });
    expect((await readFile(log, 'utf8')).startsWith(before)).toBe(true);
    await finish(id);
  });

  it('a log path that is a FIFO is refused at create, naming it, and nothing is left', async () => {
    // conmon would block opening it for writing until a reader came; the create answers at once.
    const fifo = join(w.stateRoot, '..', `fifo-${newId()}.log`);
    execFileSync('mkfifo', [fifo]);
    await expect(createTask(w, ns, ['true'], { logPath: fifo, start: false })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining(fifo),
    });
    expect((await w.client.list({})).tasks.filter((t) => t.logPath === fifo)).toEqual([]);
  });

  it('a task killed by the OOM killer exits 137 with reason OOMKilled', async () => {
    // dd allocates its 64 MiB block buffer, well over the 16 MiB limit.
    const { id } = await running(['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'], {
      memoryLimit: 16 * 1024 * 1024,
    });
    const exit = await w.client.wait({ namespace: ns, id });
    expect(exit).toMatchObject({ exitCode: 137, reason: 'OOMKilled' });
    expect(await w.nextExit((e) => e.id === id)).toMatchObject({ reason: 'OOMKilled' });
    // The cgroup's own count, read when conmon wrote no marker (conmon on a v2 host with a v1
    // hierarchy also mounted): here, on this host's cgroups, it saw the kill too.
    expect(await oomKillsOf(`/berth-test/${w.node}/${id}`)).toBeGreaterThan(0);
    // What conmon wrote, which the exit is read from: nobody but root may change it.
    const persist = taskPaths(hostLayout({ stateRoot: w.stateRoot, runRoot: w.runRoot }), ns, id);
    for (const f of [persist.exitFile, persist.oomFile, persist.persistDir]) {
      expect(modeOf(f) & 0o022, f).toBe(0);
    }
    await w.client.delete({ namespace: ns, id });
  });

  it('mounts an overlay rootfs and unmounts it on delete', async () => {
    const id = newId();
    // A snapshot as the snapshot-service lays it out: <stateRoot>/snapshots/<id>/{fs,work}.
    const base = join(w.stateRoot, 'snapshots', String(100 + Math.floor(Math.random() * 1e6)));
    await mkdir(join(base, 'fs'), { recursive: true });
    await mkdir(join(base, 'work'), { recursive: true });
    const rootfs = [
      {
        type: 'overlay',
        source: 'overlay',
        options: [`lowerdir=${w.rootfs}`, `upperdir=${join(base, 'fs')}`, `workdir=${join(base, 'work')}`],
      },
    ];
    const spec = await makeSpec(['sh', '-c', 'echo written > /marker; cat /marker'], {
      cgroupsPath: `/berth-test/${w.node}/${id}`,
    });
    await w.client.create({ namespace: ns, id, spec, rootfs, terminal: false, stdin: false });
    await w.client.start({ namespace: ns, id });
    expect((await w.client.wait({ namespace: ns, id })).exitCode).toBe(0);
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(join(base, 'fs', 'marker'), 'utf8')).toBe('written\n');
    const del = await w.client.delete({ namespace: ns, id });
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    expect(mounts).not.toContain(del.bundle);
  });
});
