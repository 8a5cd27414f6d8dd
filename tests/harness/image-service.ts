/**
 * The image-service run as its own node process against servers a test started itself (TLS NATS,
 * Sentinel...), for tests that need a real service without `berth up`'s supervisor.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { ImageApi } from '@berth/api';
import { call } from '@berth/kit';
import type { NatsConnection } from 'nats';
import { type IsolatedEnv, REPO_ROOT } from './berth.js';
import { waitFor } from './stack.js';

/** A running image-service. */
export interface RunningImageService {
  pid: number;
  /** Everything it printed so far, stdout and stderr interleaved. */
  output(): string;
  /** SIGTERMs it (when still running) and resolves once it has exited. */
  stop(): Promise<void>;
}

/**
 * Starts packages/image-service/dist/main.js with the installation's environment plus `env`, and
 * resolves once it answers `info` over `nc` from its own pid; if it exits first, or never answers,
 * it is stopped and the error carries what it printed.
 */
export async function startImageService(
  inst: IsolatedEnv,
  nc: NatsConnection,
  env: NodeJS.ProcessEnv = {},
): Promise<RunningImageService> {
  const proc = spawn(process.execPath, [join(REPO_ROOT, 'packages', 'image-service', 'dist', 'main.js')], {
    env: { ...process.env, ...inst.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (b: Buffer) => {
    out += b.toString();
  };
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  const exited = once(proc, 'exit');
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await exited;
    }
  };
  try {
    const end = await waitFor('the image-service to answer info', async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return 'exited';
      return (await call(nc, ImageApi, 'info', {}, { node: inst.nodeId, timeoutMs: 1000 })).pid === proc.pid;
    });
    if (end === 'exited')
      throw new Error(`image-service exited ${proc.exitCode ?? proc.signalCode}:\n${out}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: proc.pid as number, output: () => out, stop };
}
