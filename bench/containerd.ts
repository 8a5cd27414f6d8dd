/**
 * A private containerd for comparisons: its own root, state and sockets under `dir`, and
 * restrict_oom_score_adj so it can run beside other daemons on a shared host. The CRI plugin is
 * off unless `cri` options are given (then: registry mirrors, a private CNI conf dir, a sandbox
 * image).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
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

/** What the CRI plugin of a private containerd uses, when it is enabled. */
export interface ContainerdCriOptions {
  /** Registry host -> mirror endpoints (e.g. "registry.k8s.io" -> ["http://127.0.0.1:5000"]). */
  mirrors: Record<string, string[]>;
  /** The CNI conf dir it reads (private: the first conflist by name is the pod network). */
  cniConfDir: string;
  /** Where the CNI plugins are; default /usr/lib/cni. */
  cniBinDir?: string;
  /** The pause image of every sandbox; it must be pullable through `mirrors`. */
  sandboxImage: string;
}

/** The [plugins."io.containerd.grpc.v1.cri"] section for `cri` (TOML strings are JSON-quoted). */
function criSection(cri: ContainerdCriOptions | undefined): string {
  const q = JSON.stringify;
  const head = '[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n';
  if (!cri) return head;
  const mirrors = Object.entries(cri.mirrors)
    .map(
      ([host, eps]) =>
        `[plugins."io.containerd.grpc.v1.cri".registry.mirrors.${q(host)}]\n  endpoint = [${eps.map((e) => q(e)).join(', ')}]\n`,
    )
    .join('');
  return `${head}  sandbox_image = ${q(cri.sandboxImage)}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = ${q(cri.cniBinDir ?? '/usr/lib/cni')}
  conf_dir = ${q(cri.cniConfDir)}
  max_conf_num = 1
${mirrors}`;
}

/** True when both containerd and ctr are installed. */
export function containerdInstalled(): boolean {
  return ['containerd', 'ctr'].every((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);
}

/**
 * Starts containerd under `dir` and waits until `ctr version` answers (20 s at most). With `cri`
 * the CRI plugin serves on the same socket.
 */
export async function startContainerd(dir: string, cri?: ContainerdCriOptions): Promise<PrivateContainerd> {
  await mkdir(dir, { recursive: true });
  const sock = join(dir, 'ctd.sock');
  const config = `version = 2
root = "${join(dir, 'root')}"
state = "${join(dir, 'state')}"
${cri ? '' : 'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'}[grpc]
  address = "${sock}"
[ttrpc]
  address = "${join(dir, 'ttrpc.sock')}"
[plugins."io.containerd.internal.v1.opt"]
  path = "${join(dir, 'opt')}"
${criSection(cri)}`;
  await writeFile(join(dir, 'config.toml'), config);
  // Its log beside its config: what to read when a CRI call fails.
  const log = openSync(join(dir, 'containerd.log'), 'a');
  const proc: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], {
    stdio: ['ignore', 'ignore', log],
  });
  closeSync(log);
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
