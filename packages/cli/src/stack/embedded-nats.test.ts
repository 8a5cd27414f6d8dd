// The embedded nats-server as berth up starts it (embeddedSpec): Go's scheduler gets one P unless
// the environment names GOMAXPROCS, read back from the server's own /varz.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@berth/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { embeddedSpec, waitEmbeddedReady } from './embedded.js';
import type { EmbeddedPlan } from './plan.js';

let proc: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const gone = new Promise((resolve) => proc?.once('exit', resolve));
    proc.kill('SIGTERM');
    await gone;
  }
  proc = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Starts the embedded nats-server with `env` and returns its /varz gomaxprocs. */
async function gomaxprocs(env: NodeJS.ProcessEnv): Promise<number> {
  dir = await mkdtemp(join(tmpdir(), 'berth-embedded-nats-'));
  const [port, monitorPort] = [await freePort(), await freePort()];
  const plan: EmbeddedPlan = {
    kind: 'nats-server',
    port,
    monitorPort,
    dataDir: join(dir, 'nats'),
    logFile: join(dir, 'nats.log'),
  };
  const spec = embeddedSpec(plan, 'gomaxprocs-test', env);
  proc = spawn(spec.command, spec.args, { stdio: 'ignore', env: spec.env });
  await waitEmbeddedReady(plan, proc);
  const varz = (await (await fetch(`http://127.0.0.1:${monitorPort}/varz`)).json()) as { gomaxprocs: number };
  return varz.gomaxprocs;
}

describe('the embedded nats-server', () => {
  it('runs Go with one P by default', async () => {
    const { GOMAXPROCS: _, ...env } = process.env;
    expect(await gomaxprocs(env)).toBe(1);
  });

  it('keeps a GOMAXPROCS the environment sets', async () => {
    expect(await gomaxprocs({ ...process.env, GOMAXPROCS: '2' })).toBe(2);
  });
});
