import { constants } from 'node:os';
import { optionalAddon } from './native-addon.js';

/** How a helper process run to its end by the addon ended, and what it wrote. */
export interface NativeRunResult {
  /** Exit status; -1 when a signal ended it. */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** True when the deadline passed and its process group was killed. */
  timedOut: boolean;
}

/** build/spawn.node (native/spawn.c); rejections carry the errno's name as `code`. */
interface SpawnAddon {
  run(
    file: string,
    argv: string[],
    env: string[],
    input: string,
    timeoutMs: number,
  ): Promise<Omit<NativeRunResult, 'signal'> & { signal: number }>;
  start(file: string, argv: string[], env: string[], cwd: string, nfds: number): Promise<NativeStarted>;
}

/** A process the addon started: its pid and the parent's ends of its fds 2, 3, ... */
export interface NativeStarted {
  pid: number;
  fds: number[];
}

/** The spawn addon, or null when it is not built (callers spawn with Node's spawn()). */
const spawnAddon = optionalAddon<SpawnAddon>('spawn');

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/**
 * Runs `file` with `args` to its end in a thread of the addon's own (posix_spawn, stdin written,
 * stdout and stderr collected, reaped), in a session of its own whose process group is SIGKILLed
 * after `timeoutMs`: the event loop is never blocked by the fork and exec that Node's spawn()
 * does on it. Undefined when the addon is not built (the caller spawns as before). Rejects like
 * spawn's 'error' event (code ENOENT, EACCES) when the file cannot be executed.
 */
export function runNative(
  file: string,
  env: NodeJS.ProcessEnv,
  input: string,
  timeoutMs: number,
  args: string[] = [],
): Promise<NativeRunResult> | undefined {
  const native = spawnAddon();
  if (!native) return undefined;
  return native
    .run(file, [file, ...args], envList(env), input, Math.max(1, Math.round(timeoutMs)))
    .then((r) => ({ ...r, signal: r.signal ? (SIGNAL_NAMES.get(r.signal) ?? null) : null }));
}

/**
 * Starts `file` with `args` in a thread of the addon's own, in `cwd` and a session of its own,
 * stdin on /dev/null and one socketpair per fd from 2 on (`nfds` of them; stdout shares fd 2's): resolves
 * with the pid and the shim's ends (the caller owns them), and the thread reaps the process once
 * it exits (a daemon's first process, which exits once it has forked). Undefined when the addon
 * is not built. Rejects like spawn's 'error' event (code ENOENT, EACCES).
 */
export function startNative(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
  nfds: number,
): Promise<NativeStarted> | undefined {
  return spawnAddon()?.start(file, [file, ...args], envList(env), cwd, nfds);
}

function envList(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]));
}
