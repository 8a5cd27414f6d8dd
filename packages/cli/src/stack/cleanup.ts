import { rmSync } from 'node:fs';
import type { HostLayout } from '@berth/kit/layout';
import type { ChildState, SupervisorState } from '../context.js';
import { removeStaleSocket } from './control.js';
import { isSameProcess, terminatePid } from './proc.js';
import { STOP_ORDER } from './stack-plan.js';

/**
 * The supervisor runs as `node .../supervisor-main.js` or its bundle `.../supervisor-main.mjs`
 * (detached), or as `berth up --foreground`.
 */
export function isSupervisorProcess(pid: number): boolean {
  return (
    isSameProcess(pid, 'supervisor-main.js') ||
    isSameProcess(pid, 'supervisor-main.mjs') ||
    isSameProcess(pid, 'berth.js') ||
    isSameProcess(pid, 'berth')
  );
}

/** Where a process comes in `berth down`'s order: service groups first, embedded servers last. */
export function stopRank(c: ChildState): number {
  if (c.kind === 'embedded') return STOP_ORDER.length;
  const i = STOP_ORDER.findIndex((g) => (g as readonly string[]).includes(c.name));
  return i < 0 ? STOP_ORDER.length - 1 : i;
}

/**
 * Cleans up after a supervisor that died without stopping its stack: stops the processes its
 * state file lists, in the same order `berth down` uses, but only those whose command line
 * still matches (a pid may have been reused by an unrelated program). Removes the state file and
 * socket. Returns one line per process it stopped.
 */
export async function cleanupOrphans(
  state: SupervisorState,
  layout: HostLayout,
  graceMs: number,
): Promise<string[]> {
  const lines: string[] = [];
  const children = state.children.slice().sort((a, b) => stopRank(a) - stopRank(b));
  for (let rank = 0; rank <= STOP_ORDER.length; rank++) {
    const group = children.filter((c) => stopRank(c) === rank);
    await Promise.all(
      group.map(async (c) => {
        if (c.pid === null || !isSameProcess(c.pid, c.marker)) return;
        // A co-hosted process stops its services one after the other, each with the grace.
        const how = await terminatePid(c.pid, graceMs * Math.max(1, c.services?.length ?? 1));
        lines.push(
          `${how === 'killed' ? 'killed' : 'stopped'} leftover ${c.name}#${c.replica} (pid ${c.pid})`,
        );
      }),
    );
  }
  removeStaleSocket(layout.run.supervisorSocket);
  rmSync(layout.run.supervisor, { force: true });
  return lines;
}
