/**
 * The chaos workload: concurrent workers that churn containers through the CLI while the driver
 * injects faults. Batch containers print a known number of numbered lines and exit with a known
 * code, so the exit and log invariants can be checked afterwards; long-running ones take exec
 * churn and are stopped and removed; now and then an image is pulled and removed again.
 * Every operation's outcome is counted; only acknowledged outcomes are held to the invariants.
 */
import type { ContainerStack } from '../e2e/containers-stack.js';
import { pick } from './driver.js';

/** A batch container the workload started: `lines` numbered lines, then exit `code`. */
export interface Batch {
  name: string;
  lines: number;
  code: number;
  /** Id printed by `run -d`; empty when the run was not acknowledged. */
  id: string;
  /** `run -d` succeeded: the container must survive every fault. */
  acked: boolean;
  /** When `run -d` was sent, ms after the chaos began (to match a violation with the faults). */
  atMs: number;
  /** When `run -d` answered, ms after the chaos began: the container ran from about then. */
  answeredMs: number;
}

/** What the workload did and saw. */
export interface WorkloadRecord {
  /** Per operation: acknowledged and failed (an error was reported) counts. */
  ops: Record<string, { ok: number; failed: number }>;
  batches: Batch[];
  /** Long-running containers still running as far as the workload knows (name -> id). */
  longs: Map<string, string>;
  /** Names removed with an acknowledged `rm`: they must be gone. */
  removed: Set<string>;
  /**
   * Long-running containers whose `stop` failed: they must still exist, but may be stopped (the
   * CLI can lose NATS after its kill reached the shim, as a kill-nats fault makes it).
   */
  stopFailed: Set<string>;
  /** Ids of every container a `run -d` acknowledged (for the leftover checks). */
  ids: Set<string>;
  /** Execs whose CLI reported success but with the wrong exit code or output (must stay 0). */
  execWrong: string[];
}

/** Creates an empty record. */
export function newRecord(): WorkloadRecord {
  return {
    ops: {},
    batches: [],
    longs: new Map(),
    removed: new Set(),
    stopFailed: new Set(),
    ids: new Set(),
    execWrong: [],
  };
}

function count(rec: WorkloadRecord, op: string, ok: boolean): void {
  const c = rec.ops[op] ?? { ok: 0, failed: 0 };
  if (ok) c.ok++;
  else c.failed++;
  rec.ops[op] = c;
}

/** The shell script of a batch container (busybox sh). */
export function batchScript(lines: number, code: number): string {
  return `i=1; while [ $i -le ${lines} ]; do echo line-$i; i=$((i+1)); done; exit ${code}`;
}

/**
 * Which operation a draw in [0, 1) means: 35 % batch run, 15 % long run, 25 % exec, 10 % stop and
 * rm, 15 % pull and rmi. What cannot be done (an exec with no long container, a pull without a
 * registry) falls through to the next share.
 */
function opOf(r: number, rec: WorkloadRecord, canPull: boolean): 'batch' | 'long' | 'exec' | 'stop' | 'pull' {
  if (r < 0.35) return 'batch';
  if (r < 0.5) return 'long';
  if (r < 0.75 && rec.longs.size > 0) return 'exec';
  if (r < 0.85 && rec.longs.size > 1) return 'stop';
  return canPull ? 'pull' : 'batch';
}

/** One random operation of the workload. */
async function step(
  s: Pick<ContainerStack, 'berth'>,
  rec: WorkloadRecord,
  o: { image: string; pullRef: string; rand: () => number; t0: number },
  seq: () => number,
) {
  const { image, pullRef, rand, t0 } = o;
  // Without a registry (pullRef '') a pull's turn runs a batch container instead.
  const op = opOf(rand(), rec, pullRef !== '');
  const berth = (...args: string[]) => s.berth(args, { timeoutMs: 120_000 });
  if (op === 'batch') {
    const name = `b-${seq()}`;
    const lines = 20 + Math.floor(rand() * 300);
    // 10-99: never confused with the CLI's own error codes (1, 125-127).
    const code = 10 + Math.floor(rand() * 90);
    const atMs = Date.now() - t0;
    const out = await berth('run', '-d', '--name', name, image, 'sh', '-c', batchScript(lines, code));
    rec.batches.push({
      atMs,
      answeredMs: Date.now() - t0,
      name,
      lines,
      code,
      id: out.code === 0 ? out.stdout.trim() : '',
      acked: out.code === 0,
    });
    if (out.code === 0) rec.ids.add(out.stdout.trim());
    count(rec, 'run-batch', out.code === 0);
  } else if (op === 'long') {
    const name = `l-${seq()}`;
    const out = await berth('run', '-d', '--name', name, image, 'sleep', '600');
    if (out.code === 0) {
      rec.longs.set(name, out.stdout.trim());
      rec.ids.add(out.stdout.trim());
    }
    count(rec, 'run-long', out.code === 0);
  } else if (op === 'exec') {
    const name = pick(rand, [...rec.longs.keys()]);
    const code = 10 + Math.floor(rand() * 90);
    const out = await berth('exec', name, 'sh', '-c', `echo exec-${code}; exit ${code}`);
    const right = out.code === code && out.stdout === `exec-${code}\n`;
    // A CLI that failed says so on stderr; a wrong answer without an error is a violation.
    if (!right && out.stderr.trim() === '') execWrong(rec, name, code, out);
    count(rec, 'exec', right);
  } else if (op === 'stop') {
    const name = pick(rand, [...rec.longs.keys()]);
    // Claimed while it is stopped and removed: the other worker does not pick it meanwhile.
    rec.longs.delete(name);
    const stop = await berth('stop', '-t', '1', name);
    count(rec, 'stop', stop.code === 0);
    const rm = stop.code === 0 ? await berth('rm', name) : undefined;
    if (rm) count(rec, 'rm', rm.code === 0);
    if (rm?.code === 0) rec.removed.add(name);
    // A failed stop removes nothing, but it may have stopped the container (its kill went out
    // before the CLI lost its answer): kept, not as a running one. After a failed rm the
    // container may or may not exist.
    else if (!rm) rec.stopFailed.add(name);
  } else {
    const pull = await berth('pull', pullRef);
    count(rec, 'pull', pull.code === 0);
    if (pull.code !== 0) return;
    const rmi = await berth('rmi', pullRef);
    count(rec, 'rmi', rmi.code === 0);
  }
}

function execWrong(rec: WorkloadRecord, name: string, code: number, out: { code: number; stdout: string }) {
  rec.execWrong.push(`${name}: wanted ${code} "exec-${code}", got ${out.code} ${JSON.stringify(out.stdout)}`);
}

/**
 * Runs `workers` concurrent workers until `endAt` (epoch ms); each waits for its operation to
 * finish before drawing the next. Resolves when every worker has finished its last operation.
 */
export async function runWorkload(
  s: Pick<ContainerStack, 'berth'>,
  opts: { image: string; pullRef: string; rand: () => number; endAt: number; t0: number; workers?: number },
): Promise<WorkloadRecord> {
  const rec = newRecord();
  let n = 0;
  const seq = () => ++n;
  const worker = async () => {
    while (Date.now() < opts.endAt) await step(s, rec, opts, seq);
  };
  await Promise.all(Array.from({ length: opts.workers ?? 2 }, worker));
  return rec;
}
