/**
 * The chaos driver: from a seeded random stream it picks faults (SIGKILL of a service, of
 * nats-server or of redis-server; SIGSTOP/SIGCONT of a service; a full disk) and injects them one at a time
 * into a running container stack until a deadline, bringing each victim back afterwards the way a
 * supervisor would. Every fault is recorded with how long the stack took to answer again.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { call } from '@berth/kit';
import { type ContainerStack, SERVICE_APIS, until } from '../e2e/containers-stack.js';

/** A random stream in [0, 1) from a 32-bit seed (mulberry32): the same seed replays the same run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Picks one element of a non-empty list with the random stream. */
export function pick<T>(rand: () => number, list: readonly T[]): T {
  const v = list[Math.floor(rand() * list.length)];
  if (v === undefined) throw new Error('pick from an empty list');
  return v;
}

/** A shuffled copy of a list (Fisher-Yates with the random stream). */
export function shuffle<T>(rand: () => number, list: readonly T[]): T[] {
  const out = [...list];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** The faults the driver injects. */
export const FaultKind = {
  killService: 'kill-service',
  killNats: 'kill-nats',
  killRedis: 'kill-redis',
  pauseService: 'pause-service',
  /** Fills the state root's file system (only when it is a tmpfs of the test's own). */
  fillDisk: 'fill-disk',
} as const;
export type FaultKind = (typeof FaultKind)[keyof typeof FaultKind];

/** One injected fault: what, on whom, when (ms after the start) and how long recovery took. */
export interface FaultRecord {
  kind: FaultKind;
  target: string;
  atMs: number;
  /** From the fault to every service answering `info` again. */
  recoveryMs: number;
  /** A disk fill: when its files were removed (ms after t0), the end of the disk being full. */
  clearedMs?: number;
}

/** Waits until every service of the stack answers `info` (the recovery condition). */
export async function waitAllAnswer(s: ContainerStack, timeoutMs = 60_000): Promise<void> {
  for (const name of s.services) {
    await until(
      `${name} to answer info`,
      async () =>
        (await call(s.nc, SERVICE_APIS[name], 'info', {}, { node: s.node, timeoutMs: 1000 })).pid > 0,
      timeoutMs,
    );
  }
}

async function sigkill(
  proc: {
    exitCode: number | null;
    signalCode: string | null;
    kill(sig: NodeJS.Signals): boolean;
  } & NodeJS.EventEmitter,
) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGKILL');
  await exited;
}

/** Injects one fault and brings the stack back; returns what it did. */
async function inject(
  s: ContainerStack,
  kind: FaultKind,
  rand: () => number,
  t0: number,
): Promise<FaultRecord> {
  const atMs = Date.now() - t0;
  let target: string;
  let clearedMs: number | undefined;
  switch (kind) {
    case FaultKind.killService: {
      const name = pick(rand, s.services);
      target = name;
      await s.kill(name, 'SIGKILL');
      // What the supervisor of `berth up` does: start it again; start() waits for its info.
      await s.start(name);
      break;
    }
    case FaultKind.killNats:
      target = 'nats-server';
      await sigkill(s.nats.proc);
      await s.nats.restart();
      break;
    case FaultKind.killRedis:
      target = 'redis-server';
      await sigkill(s.redis.proc);
      await s.redis.restart();
      break;
    case FaultKind.pauseService: {
      const name = pick(rand, s.services);
      const proc = s.procs.get(name);
      if (!proc) throw new Error(`no process for ${name}`);
      target = name;
      proc.kill('SIGSTOP');
      // The length of the pause is the fault itself, not a wait for anything.
      await pause(1000 + Math.floor(rand() * 3000));
      proc.kill('SIGCONT');
      break;
    }
    case FaultKind.fillDisk: {
      target = s.stateRoot;
      const fill = join(s.stateRoot, 'chaos-fill');
      const fs = await statfs(s.stateRoot);
      // Most of the free space at once, then the rest byte by byte (the workload writes in
      // between): every write in the state root meets ENOSPC until the files go.
      const bulk = fs.bavail * fs.bsize - 16 * 2 ** 20;
      if (bulk > 0) spawnSync('fallocate', ['-l', String(bulk), fill]);
      const dd = spawnSync('dd', ['if=/dev/zero', `of=${fill}-rest`, 'bs=64k'], { encoding: 'utf8' });
      if (!dd.stderr.includes('No space left'))
        throw new Error(`disk fill did not fill ${s.stateRoot}: ${dd.stderr}`);
      await pause(1000 + Math.floor(rand() * 3000));
      await rm(fill, { force: true });
      await rm(`${fill}-rest`, { force: true });
      clearedMs = Date.now() - t0;
      break;
    }
  }
  await waitAllAnswer(s);
  return { kind, target, atMs, recoveryMs: Date.now() - t0 - atMs, ...(clearedMs ? { clearedMs } : {}) };
}

/**
 * Injects random faults until `endAt` (epoch ms), pacing 1.5-4.5 s between them, and returns the
 * record. `kinds` limits which faults are drawn. `log` receives one line per fault.
 */
export async function runDriver(
  s: ContainerStack,
  opts: {
    rand: () => number;
    endAt: number;
    /** Start of the chaos (epoch ms): fault times are printed relative to it. */
    t0: number;
    kinds?: readonly FaultKind[];
    log?: (line: string) => void;
  },
): Promise<FaultRecord[]> {
  const kinds = opts.kinds ?? Object.values(FaultKind);
  const done: FaultRecord[] = [];
  // Drawn from a shuffled bag, refilled when empty: a short run still meets every kind.
  let bag: FaultKind[] = [];
  const t0 = opts.t0;
  while (Date.now() < opts.endAt) {
    await pause(1500 + Math.floor(opts.rand() * 3000));
    if (Date.now() >= opts.endAt) break;
    if (bag.length === 0) bag = shuffle(opts.rand, kinds);
    const rec = await inject(s, bag.pop() as FaultKind, opts.rand, t0);
    opts.log?.(`fault ${rec.kind} ${rec.target} at ${rec.atMs} ms, recovered in ${rec.recoveryMs} ms`);
    done.push(rec);
  }
  return done;
}
