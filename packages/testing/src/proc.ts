import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:net';

// Process helpers shared by the server starters (servers.ts, cluster.ts).

/** Spawns a server in `dir`, keeping the tail of its output for failure messages. */
export function launch(
  cmd: string,
  args: string[],
  dir: string,
): { proc: ChildProcess; output: () => string } {
  const proc = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => {
    out += b.toString();
    if (out.length > 64_000) out = out.slice(-32_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  proc.on('error', (err) => keep(Buffer.from(`spawn ${cmd} failed: ${err.message}\n`)));
  return { proc, output: () => out };
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
export async function stopProc(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** Waits until `probe` resolves true, failing with the server's output if it exits or times out. */
export async function waitReady(
  what: string,
  proc: ChildProcess,
  output: () => string,
  probe: () => Promise<boolean>,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `${what} exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${output()}`,
      );
    }
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms:\n${output()}`);
}

/** True when something accepts TCP connections on the loopback port. */
export async function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
