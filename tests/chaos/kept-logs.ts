/**
 * The services' logs of a chaos run, kept when it fails: they are written (or copied) outside the
 * stack's root, which the stack's stop() removes as CI removes its clone, and the failure names
 * where they are. A run that passes removes them, unless CHAOS_LOG_DIR says where they go.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One run's log directory; `passed` is set by `run` once the test body finished. */
export interface KeptLogs {
  dir: string;
  passed: boolean;
  /** Runs the test body; a failure gets the directory appended to its message. */
  run(body: () => Promise<void>): Promise<void>;
  /** After the stack stopped: removes the logs of a run that passed, else prints where they are. */
  settle(): Promise<void>;
}

/** Makes the directory: CHAOS_LOG_DIR if set, else a fresh `berth-chaos-logs-*` under the temp dir. */
export async function keptLogs(): Promise<KeptLogs> {
  const given = process.env.CHAOS_LOG_DIR;
  const dir = given ?? (await mkdtemp(join(tmpdir(), 'berth-chaos-logs-')));
  await mkdir(dir, { recursive: true });
  const logs: KeptLogs = {
    dir,
    passed: false,
    async run(body) {
      try {
        await body();
        logs.passed = true;
      } catch (err) {
        // The first thing whoever reads the failure needs after the seed.
        if (err instanceof Error) err.message += `\nservice logs (kept): ${dir}`;
        throw err;
      }
    },
    async settle() {
      // A body that timed out or a failed beforeAll never set `passed`: kept too.
      if (logs.passed && !given) await rm(dir, { recursive: true, force: true });
      else console.log(`chaos: service logs kept in ${dir}`);
    },
  };
  return logs;
}
