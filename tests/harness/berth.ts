/**
 * Running the built `berth` CLI from end-to-end tests.
 *
 * Every test gets its own temp root (state, run, config file) and a random node id through
 * `isolatedEnv`, so tests never touch /var/lib/berth, /run/berth or /etc/berth, and several test
 * runs can share the machine. `runBerth` runs one command and returns exit code and output.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdirSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type TestCniNetwork, tempDir, testCniNetwork } from '@berth/testing';
import { startCommand } from './command.js';

/** Root of the repository (tests/harness -> ..). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The built CLI's entry point; run with `node` (process.execPath). */
export const BERTH_BIN = join(REPO_ROOT, 'packages', 'cli', 'bin', 'berth.js');

/**
 * The `berth` command users run (scripts/setup.sh links it onto PATH): the built client
 * (packages/cli/native/berth.c), which has the `berth up` supervisor run the commands it serves
 * and starts `node` from PATH on BERTH_BIN without NODE_EXTRA_CA_CERTS for the others.
 */
export const BERTH_LAUNCHER = join(REPO_ROOT, 'packages', 'cli', 'dist', 'berth');

/** Result of one CLI run. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Paths and environment of one isolated berth installation. */
export interface IsolatedEnv {
  /** Temp directory holding everything below; removed by the stack's cleanup. */
  root: string;
  stateRoot: string;
  runRoot: string;
  configFile: string;
  /** The installation's private CNI network (shim settings in its config); close() removes the bridge. */
  cni: TestCniNetwork;
  nodeId: string;
  /** Environment for CLI runs: the parent's, minus any BERTH_* it had, plus this installation's. */
  env: NodeJS.ProcessEnv;
}

/**
 * Makes a fresh isolated installation: temp state/run roots, a config file (BERTH_CONFIG, so
 * /etc/berth/config.json is never read) with `config` in it, and a random node id. The caller
 * removes `root` when done (`Stack.stop()` does it for a stack made from it).
 */
export async function isolatedEnv(opts: { config?: Record<string, unknown>; env?: NodeJS.ProcessEnv } = {}) {
  const root = await tempDir('e2e');
  const stateRoot = join(root, 'state');
  const runRoot = join(root, 'run');
  mkdirSync(stateRoot, { recursive: true });
  const configFile = join(root, 'config.json');
  // Containers run on the bridge network by default: the shim gets a CNI network of its own, so
  // tests never write /etc/cni/net.d, create berth0 or share leases.
  const cni = testCniNetwork(root);
  const config = { ...opts.config } as { services?: Record<string, Record<string, unknown>> };
  config.services = { ...config.services, shim: { ...cni.settings, ...config.services?.shim } };
  writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
  const nodeId = `e2e-${randomBytes(4).toString('hex')}`;
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BERTH_')) env[k] = v;
  Object.assign(env, {
    BERTH_CONFIG: configFile,
    BERTH_STATE_ROOT: stateRoot,
    BERTH_RUN_ROOT: runRoot,
    BERTH_NODE_ID: nodeId,
    BERTH_LOG_LEVEL: 'info',
    // Services finish in-flight work within this on `berth down`; tests have none in flight.
    BERTH_SHUTDOWN_GRACE_MS: '3000',
    ...opts.env,
  });
  return { root, stateRoot, runRoot, configFile, cni, nodeId, env } satisfies IsolatedEnv;
}

/**
 * Removes an installation no stack owns (a stack's stop removes its own): its CNI bridge, if one
 * was made, and its temp root. Services run in it must be stopped first.
 */
export async function removeIsolatedEnv(iso: IsolatedEnv | undefined): Promise<void> {
  if (!iso) return;
  await iso.cni.close();
  await rm(iso.root, { recursive: true, force: true });
}

/**
 * Runs `berth <args>` with the given environment and waits for it to exit (bounded). The CLI
 * runs under the same node binary as the tests, so PATH may be changed freely. `wrapper` is a
 * command the CLI runs under (e.g. `setpriv --bounding-set -net_raw`), given the CLI's argv.
 * With `launcher` it runs BERTH_LAUNCHER as a user's shell does, with the tests' node first on
 * its PATH.
 */
export async function runBerth(
  args: string[],
  opts: {
    env: NodeJS.ProcessEnv;
    timeoutMs?: number;
    input?: string;
    wrapper?: string[];
    launcher?: boolean;
    /** The directory it runs in (default: the tests'). */
    cwd?: string;
  },
): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 90_000;
  const cli = opts.launcher ? [BERTH_LAUNCHER] : [process.execPath, BERTH_BIN];
  const [cmd, ...argv] = [...(opts.wrapper ?? []), ...cli, ...args] as [string, ...string[]];
  const env = opts.launcher
    ? { ...opts.env, PATH: `${dirname(process.execPath)}:${opts.env.PATH ?? ''}` }
    : opts.env;
  const run = await startCommand(cmd, argv, {
    env,
    timeoutMs,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  }).done;
  if (run.timedOut) {
    throw new Error(
      `berth ${args.join(' ')} did not exit within ${timeoutMs} ms\n${run.stdout}\n${run.stderr}`,
    );
  }
  return { code: run.code ?? (run.signal ? 128 : 1), stdout: run.stdout, stderr: run.stderr };
}

/** Finds an executable on PATH, like `command -v`; undefined when absent. */
export function which(cmd: string, path: string = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(':')) {
    if (!dir) continue;
    const candidate = join(dir, cmd);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
