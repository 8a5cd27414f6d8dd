import { describe, expect, it } from 'vitest';
import { terminalSizer } from './terminal-size.js';

describe('terminalSizer', () => {
  it('sends one size at a time, each read when it goes out, so the last send has the latest size', async () => {
    const out = { rows: 30, columns: 100 };
    const sent: string[] = [];
    let release: () => void = () => undefined;
    const firstHeld = new Promise<void>((r) => {
      release = r;
    });
    let calls = 0;
    const sizer = terminalSizer(out, async (rows, cols) => {
      calls++;
      // The first send is slow (a FIFO open waiting on the thread pool): the second must wait.
      if (calls === 1) await firstHeld;
      sent.push(`${rows}x${cols}`);
    });
    const turn = () => new Promise<void>((r) => setImmediate(r));
    const first = sizer();
    await turn();
    expect(calls).toBe(1);
    // The terminal is resized while the first send is still out.
    out.rows = 40;
    out.columns = 120;
    const second = sizer();
    await turn();
    expect(calls).toBe(1);
    release();
    await Promise.all([first, second]);
    expect(sent).toEqual(['30x100', '40x120']);
  });

  it('drops a failed send and goes on; bounds and defaults the size', async () => {
    const out: { rows?: number; columns?: number } = { rows: 5000 };
    const sent: string[] = [];
    let fail = true;
    const sizer = terminalSizer(out, async (rows, cols) => {
      if (fail) {
        fail = false;
        throw new Error('monitor gone');
      }
      sent.push(`${rows}x${cols}`);
    });
    await sizer();
    await sizer();
    expect(sent).toEqual(['1000x80']);
  });
});
