/**
 * A private containerd for comparisons: its own root, state and sockets under `dir`, the CRI
 * plugin off, and restrict_oom_score_adj so it can run beside other daemons on a shared host.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A running private containerd. */
export interface PrivateContainerd {
  /** Its gRPC socket, for `ctr -a`. */
  sock: string;
  pid: number;
  /** Stops the daemon (SIGTERM, awaited) and detaches what it left mounted under its directory. */
  stop(): Promise<void>;
}

/** True when both containerd and ctr are installed. */
export function containerdInstalled(): boolean {
  return ['containerd', 'ctr'].every((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);
}

/** Starts containerd under `dir` and waits until `ctr version` answers (20 s at most). */
export async function startContainerd(dir: string): Promise<PrivateContainerd> {
  await mkdir(dir, { recursive: true });
  const sock = join(dir, 'ctd.sock');
  const config = `version = 2
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${sock}"
[ttrpc]
  address = "${join(dir, 'ttrpc.sock')}"
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(dir, 'opt')}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
`;
  await writeFile(join(dir, 'config.toml'), config);
  const proc: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: 'ignore' });
  const deadline = Date.now() + 20_000;
  while (spawnSync('ctr', ['-a', sock, 'version'], { stdio: 'ignore' }).status !== 0) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill('SIGKILL');
      throw new Error(`containerd did not start (config ${join(dir, 'config.toml')})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    sock,
    pid: proc.pid ?? 0,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      const mounts = readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[1] ?? '')
        .filter((m) => m.startsWith(`${dir}/`));
      for (const m of mounts.reverse()) spawnSync('umount', ['-l', m]);
    },
  };
}
