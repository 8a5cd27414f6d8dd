import { expect } from 'vitest';
import type { Terminal } from '../harness/command.js';

/** What the exec -it tests run on their 25x90 terminal: the tty, its size, a line read, exit 4. */
export const TTY_EXEC_SCRIPT = 'tty; stty size; read x; echo got:$x; exit 4';

/**
 * Drives TTY_EXEC_SCRIPT on `t` and checks what a user of `exec -it` sees: the terminal's size on
 * the process's tty, the line typed read back, and the process's exit code as the CLI's own.
 */
export async function expectTtyExec(t: Terminal): Promise<void> {
  try {
    await t.waitFor('25 90');
    t.type('hi\r');
    const r = await t.done;
    expect(r.out).toMatch(/\/dev\/pts\/\d+/);
    expect(r.out).toContain('got:hi');
    expect(r.code, r.out).toBe(4);
  } finally {
    t.close();
  }
}
