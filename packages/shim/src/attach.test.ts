import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attach, resizeTerminal, setProcessTerminalSize } from './attach.js';
import { bindRootfs, makeSpec, newId, type ShimWorld, startWorld } from './testing/fixture.js';

const ns = 'attach';
let w: ShimWorld;

beforeAll(async () => {
  w = await startWorld();
});
afterAll(async () => {
  await w?.close();
});

async function created(args: string[], io: { terminal: boolean; stdin: boolean; stdinOnce?: boolean }) {
  const id = newId();
  const spec = await makeSpec(args, { cgroupsPath: `/berth-test/${w.node}/${id}`, env: ['TERM=xterm'] });
  const st = await w.client.create({ namespace: ns, id, spec, rootfs: bindRootfs(w.rootfs), ...io });
  return { id, st };
}

/** Collects a session's output and resolves waiters when it contains a text. */
function collector() {
  let text = '';
  const waiters: { needle: string; resolve: () => void }[] = [];
  return {
    sink: (b: Buffer) => {
      text += b.toString();
      for (const x of [...waiters]) {
        if (text.includes(x.needle)) {
          waiters.splice(waiters.indexOf(x), 1);
          x.resolve();
        }
      }
    },
    text: () => text,
    seen(needle: string, timeoutMs = 10_000): Promise<void> {
      if (text.includes(needle)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`never saw ${JSON.stringify(needle)} in ${JSON.stringify(text)}`)),
          timeoutMs,
        );
        waiters.push({
          needle,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        });
      });
    },
  };
}

describe('attach (SOCK_SEQPACKET to conmon)', () => {
  it('streams stdin in and stdout/stderr out of a non-TTY task; closing stdin ends cat', async () => {
    const { id, st } = await created(['sh', '-c', 'cat; echo done >&2'], { terminal: false, stdin: true });
    const out = collector();
    const err = collector();
    const s = attach(st.attachPath!, { stdout: out.sink, stderr: err.sink });
    await w.client.start({ namespace: ns, id });
    await s.write('hello through conmon\n');
    await out.seen('hello through conmon\n');
    s.closeStdin();
    await err.seen('done\n');
    await s.done;
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 0 });
    await w.client.delete({ namespace: ns, id });
  });

  it('gives a TTY task a terminal: input echo, resize, exit code', async () => {
    const { id, st } = await created(['sh'], { terminal: true, stdin: true });
    const out = collector();
    const s = attach(st.attachPath!, { stdout: out.sink });
    await w.client.start({ namespace: ns, id });
    await resizeTerminal(st.ctlPath!, 33, 77);
    // conmon applies the size from its ctl fifo asynchronously: the shell waits for it to land.
    await s.write(
      'until [ "$(stty size)" = "33 77" ]; do sleep 0.02; done; echo size-$(stty size | tr " " x); exit 3\n',
    );
    await out.seen('size-33x77');
    await s.done;
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 3 });
    await w.client.delete({ namespace: ns, id });
  });

  it("sets a created TTY task's size on its pty at once: its first `stty size` after the start sees it", async () => {
    const { id, st } = await created(['sh', '-c', 'echo size-$(stty size | tr " " x)'], {
      terminal: true,
      stdin: false,
    });
    const out = collector();
    const s = attach(st.attachPath!, { stdout: out.sink });
    setProcessTerminalSize(st.pid, 41, 93);
    await w.client.start({ namespace: ns, id });
    await out.seen('size-41x93');
    await s.done;
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 0 });
    await w.client.delete({ namespace: ns, id });
    // A process without a terminal, or gone: refused, naming it.
    const plain = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      expect(() => setProcessTerminalSize(plain.pid ?? 0, 10, 10)).toThrow(
        /cannot set the terminal size of process \d+: TIOCSWINSZ/,
      );
    } finally {
      plain.kill('SIGKILL');
    }
    expect(() => setProcessTerminalSize(st.pid, 0, 10)).toThrow(/invalid terminal size 0x10/);
  });

  it('resizes sent back to back: the terminal ends at the last size', async () => {
    // A window dragged by its corner on a busy machine: sizes come faster than the monitor reads
    // them. The monitor is stopped while three are sent, so it finds them all in one read.
    const { id, st } = await created(['sh'], { terminal: true, stdin: true });
    const out = collector();
    const s = attach(st.attachPath!, { stdout: out.sink });
    await w.client.start({ namespace: ns, id });
    const monitor = Number(readFileSync(join(dirname(st.ctlPath!), 'conmon.pid'), 'utf8'));
    process.kill(monitor, 'SIGSTOP');
    try {
      await resizeTerminal(st.ctlPath!, 30, 70);
      await resizeTerminal(st.ctlPath!, 40, 80);
      await resizeTerminal(st.ctlPath!, 50, 90);
    } finally {
      process.kill(monitor, 'SIGCONT');
    }
    // The terminal echoes the line typed: the quotes keep the marker out of that echo.
    await s.write(
      'for i in $(seq 100); do [ "$(stty size)" = "50 90" ] && break; sleep 0.05; done; echo "SIZE""IS" $(stty size); exit 0\n',
    );
    await out.seen('SIZEIS', 20_000);
    await s.done;
    expect(out.text()).toContain('SIZEIS 50 90');
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 0 });
    await w.client.delete({ namespace: ns, id });
  });

  it('exec -it: attach to an exec before it starts, resize through the agent', async () => {
    const { id } = await created(['sleep', '1000'], { terminal: false, stdin: false });
    await w.client.start({ namespace: ns, id });
    const ex = await w.client.exec({
      namespace: ns,
      id,
      execId: 'it',
      process: { args: ['sh'], cwd: '/', env: ['PATH=/bin', 'TERM=xterm'] },
      terminal: true,
      stdin: true,
    });
    const out = collector();
    const s = attach(ex.attachPath!, { stdout: out.sink });
    await w.client.start({ namespace: ns, id, execId: 'it' });
    await w.client.resize({ namespace: ns, id, execId: 'it', rows: 21, cols: 99 });
    await s.write(
      'until [ "$(stty size)" = "21 99" ]; do sleep 0.02; done; echo size-$(stty size | tr " " x); echo in-$((40+2)); exit 0\n',
    );
    await out.seen('size-21x99');
    await out.seen('in-42');
    await s.done;
    expect(await w.client.wait({ namespace: ns, id, execId: 'it' })).toMatchObject({ exitCode: 0 });
    await w.client.kill({ namespace: ns, id, signal: 'KILL', all: true });
    await w.client.wait({ namespace: ns, id });
    await w.client.delete({ namespace: ns, id });
  });

  it('stdinOnce false keeps stdin open across attach sessions (run -dit, then attach)', async () => {
    const { id, st } = await created(['cat'], { terminal: false, stdin: true, stdinOnce: false });
    await w.client.start({ namespace: ns, id });
    for (const word of ['first', 'second']) {
      const out = collector();
      const s = attach(st.attachPath!, { stdout: out.sink });
      await s.write(`${word}\n`);
      await out.seen(`${word}\n`);
      s.detach();
      await s.done;
    }
    expect((await w.client.state({ namespace: ns, id })).status).toBe('running');
    await expect(w.client['close-stdin']({ namespace: ns, id })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    await w.client.kill({ namespace: ns, id, signal: 'KILL', all: true });
    await w.client.wait({ namespace: ns, id });
    await w.client.delete({ namespace: ns, id });
  });

  it('close-stdin through the agent ends a process reading stdin', async () => {
    const { id } = await created(['cat'], { terminal: false, stdin: true });
    await w.client.start({ namespace: ns, id });
    await w.client['close-stdin']({ namespace: ns, id });
    expect(await w.client.wait({ namespace: ns, id })).toMatchObject({ exitCode: 0 });
    await w.client.delete({ namespace: ns, id });
  });
});
