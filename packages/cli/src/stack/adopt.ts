import { readFileSync } from 'node:fs';
import type { ChildState, SupervisorState } from '../context.js';
import { isSupervisorProcess, stopRank } from './cleanup.js';
import { exited, isSameProcess, terminatePid } from './proc.js';
import { STOP_ORDER } from './stack-plan.js';

/** Key of a supervised process: its name and replica (`shim#1`). */
export const childKey = (c: { name: string; replica: number }) => `${c.name}#${c.replica}`;

/**
 * The processes a supervisor that died left running, read from its state file (`file`) before
 * the new supervisor writes its own: by childKey, only those whose pid still runs their program.
 * Empty when there is no state file or its supervisor still runs (it is not ours to take from).
 */
export function orphansOf(file: string): Map<string, ChildState> {
  let state: SupervisorState;
  try {
    state = JSON.parse(readFileSync(file, 'utf8')) as SupervisorState;
  } catch {
    return new Map();
  }
  if (!exited(state.pid) && isSupervisorProcess(state.pid)) return new Map();
  const out = new Map<string, ChildState>();
  for (const c of state.children ?? []) {
    if (c.pid !== null && !exited(c.pid) && isSameProcess(c.pid, c.marker)) out.set(childKey(c), c);
  }
  return out;
}

/**
 * Stops orphans the new plan has no place for (fewer replicas, another spec), in `berth down`'s
 * order, each only if its pid still runs its program. Returns one line per process stopped.
 */
export async function stopOrphans(orphans: Iterable<ChildState>, graceMs: number): Promise<string[]> {
  const lines: string[] = [];
  const all = [...orphans].sort((a, b) => stopRank(a) - stopRank(b));
  for (let rank = 0; rank <= STOP_ORDER.length; rank++) {
    await Promise.all(
      all
        .filter((c) => stopRank(c) === rank)
        .map(async (c) => {
          if (c.pid === null || !isSameProcess(c.pid, c.marker)) return;
          const how = await terminatePid(c.pid, graceMs * Math.max(1, c.services?.length ?? 1));
          lines.push(
            `${how === 'killed' ? 'killed' : 'stopped'} ${childKey(c)} (pid ${c.pid}) left by a dead supervisor`,
          );
        }),
    );
  }
  return lines;
}
