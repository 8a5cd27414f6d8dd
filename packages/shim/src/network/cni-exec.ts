import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { withSpan } from '@berth/kit/tracing';
import { runNative } from '../runtime/spawn-native.js';

/** The CNI operations a runtime asks a plugin for. */
export const CniCommand = { ADD: 'ADD', DEL: 'DEL', CHECK: 'CHECK' } as const;
export type CniCommand = (typeof CniCommand)[keyof typeof CniCommand];

/** Everything one plugin invocation needs (the CNI_* environment and the config on stdin). */
export interface PluginCall {
  type: string;
  command: CniCommand;
  containerId: string;
  /** Path of the network namespace; empty on a DEL whose namespace is already gone. */
  netns: string;
  ifname: string;
  /** CNI_ARGS: `K=V` pairs joined by `;` (absent: not set). */
  args?: string;
  pluginDirs: string[];
  config: Record<string, unknown>;
  timeoutMs: number;
  /** Network name, for error messages. */
  network: string;
}

/** The CNI spec's well-known error codes mapped to ours; 100+ are plugin-specific (INTERNAL). */
const CNI_ERROR_CODES: Record<number, Code> = {
  1: Code.FAILED_PRECONDITION, // incompatible CNI version
  2: Code.INVALID_ARGUMENT, // unsupported field in network configuration
  3: Code.NOT_FOUND, // container unknown or does not exist
  4: Code.INVALID_ARGUMENT, // invalid necessary environment variables
  5: Code.INTERNAL, // I/O failure
  6: Code.INVALID_ARGUMENT, // failed to decode content
  7: Code.INVALID_ARGUMENT, // invalid network config
  11: Code.UNAVAILABLE, // try again later
};

/** Finds a plugin binary in the plugin directories, first hit wins (as libcni's FindInPath). */
export async function findPlugin(type: string, dirs: string[]): Promise<string> {
  for (const dir of dirs) {
    const path = join(dir, type);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  throw new BerthError(
    Code.FAILED_PRECONDITION,
    `CNI plugin "${type}" not found in ${dirs.join(', ')} (install containernetworking-plugins or set services.shim.cniPluginDirs)`,
  );
}

/**
 * Runs one CNI plugin and returns its parsed stdout (undefined when it printed nothing, as DEL
 * may). A plugin's JSON error becomes a BerthError naming the plugin, network, command, CNI code
 * and message; a plugin still running after the timeout is killed with its process group.
 */
export function execPlugin(call: PluginCall): Promise<Record<string, unknown> | undefined> {
  const attrs = {
    'berth.cni.plugin': call.type,
    'berth.cni.command': call.command,
    'berth.cni.network': call.network,
    'berth.container.id': call.containerId,
    'process.command': call.type,
  };
  return withSpan(`cni ${call.type} ${call.command}`, attrs, (span) => execPluginIn(call, span));
}

async function execPluginIn(
  call: PluginCall,
  span: { setAttribute(k: string, v: string | number): unknown },
): Promise<Record<string, unknown> | undefined> {
  const bin = await findPlugin(call.type, call.pluginDirs);
  span.setAttribute('process.executable.path', bin);
  const what = `CNI plugin "${call.type}" ${call.command} (network "${call.network}", container "${call.containerId}")`;
  const env: NodeJS.ProcessEnv = {
    // Plugins run iptables, ip and sysctl helpers themselves: they need a PATH.
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifname,
    CNI_PATH: call.pluginDirs.join(':'),
    ...(call.args ? { CNI_ARGS: call.args } : {}),
  };
  const { code, signal, stdout, stderr, timedOut } = await run(
    bin,
    env,
    JSON.stringify(call.config),
    call.timeoutMs,
  );
  span.setAttribute('process.exit.code', code);
  if (timedOut) {
    throw new BerthError(
      Code.DEADLINE_EXCEEDED,
      `${what} did not finish within ${call.timeoutMs} ms and was killed`,
    );
  }
  if (code !== 0) {
    const err = parseJson(stdout) as { code?: unknown; msg?: unknown; details?: unknown } | undefined;
    if (err && typeof err.msg === 'string') {
      const cniCode = typeof err.code === 'number' ? err.code : 0;
      const details = typeof err.details === 'string' && err.details ? `: ${err.details}` : '';
      throw new BerthError(
        CNI_ERROR_CODES[cniCode] ?? Code.INTERNAL,
        `${what} failed (CNI error ${cniCode}): ${err.msg}${details}`,
      );
    }
    const why = signal ? `was killed by ${signal}` : `exited ${code}`;
    const out = (stderr.trim() || stdout.trim()).slice(0, 500);
    throw new BerthError(Code.INTERNAL, `${what} ${why}${out ? `: ${out}` : ''}`);
  }
  if (!stdout.trim()) return undefined;
  const result = parseJson(stdout);
  if (!result || typeof result !== 'object' || Array.isArray(result)) {
    throw new BerthError(
      Code.INTERNAL,
      `${what} printed a result that is not a JSON object: ${stdout.slice(0, 200)}`,
    );
  }
  return result as Record<string, unknown>;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

interface RunResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs a plugin in its own process group so a hung plugin and whatever it started die together:
 * by the spawn addon when it is built (the fork and exec happen off the event loop, which then
 * goes on serving the pod's task create while CNI ADD starts), else by Node's spawn().
 */
function run(bin: string, env: NodeJS.ProcessEnv, input: string, timeoutMs: number): Promise<RunResult> {
  return runNative(bin, env, input, timeoutMs) ?? spawnRun(bin, env, input, timeoutMs);
}

function spawnRun(bin: string, env: NodeJS.ProcessEnv, input: string, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => {
      // a plugin that exits without reading its config: its exit status tells what happened
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? -1,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    child.stdin.end(input);
  });
}
