import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/stack.js';
import { EXAMPLES, type SdkStack, startProgram, startSdkStack } from './sdk-stack.js';

// The programs in examples/ use only @berth/client; here each runs against a real stack (`berth
// up`, real runc/conmon) and a local registry, and its output is checked.
let s: SdkStack;

beforeAll(async () => {
  s = await startSdkStack();
}, 180_000);
afterAll(async () => s?.stop(), 120_000);

const example = (name: string, args: string[], input?: string) =>
  startProgram(join(EXAMPLES, name), args, {
    env: s.env,
    cwd: EXAMPLES,
    ...(input !== undefined ? { input } : {}),
  });

async function containerIds(): Promise<string[]> {
  const r = await s.stack.berth('ps', '-aq');
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.split(/\s+/).filter(Boolean);
}

describe('examples', () => {
  it('run-container pulls the image, runs it and prints its output and exit code', async () => {
    const r = await example('run-container.mjs', [s.image, 'sh', '-c', 'echo hello from berth; echo oops >&2; exit 4'])
      .done;
    expect(r.stdout).toBe('hello from berth\n');
    expect(r.stderr).toContain(`pull ${s.image}: done`);
    expect(r.stderr).toContain('oops\n');
    expect(r.stderr).toMatch(/container [0-9a-f]{12} exited with 4/);
    expect(r.code).toBe(4);
    // The image is on the node now and the container was removed.
    const images = await s.stack.berth('images');
    expect(images.stdout).toContain('sdk/busybox');
    expect(await containerIds()).toEqual([]);
  });

  it('follow-exits prints the exits of containers run by someone else', async () => {
    const p = example('follow-exits.mjs', ['2']);
    await waitFor('follow-exits to subscribe', () => p.stderr().includes('listening for task exits'));
    const a = await s.stack.berth('run', '--rm', s.image, 'sh', '-c', 'exit 7');
    expect(a.code).toBe(7);
    const id = (await s.stack.berth('run', '-d', s.image, 'true')).stdout.trim();
    try {
      const r = await p.done;
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(new RegExp(`^exit [0-9a-f]{12} code=7( reason=\\w+)? node=${s.stack.nodeId}$`));
      expect(lines[1]).toMatch(new RegExp(`^exit ${id.slice(0, 12)} code=0( reason=\\w+)? node=${s.stack.nodeId}$`));
    } finally {
      await s.stack.berth('rm', '-f', id);
    }
  });

  it('jobs runs one container per line of stdin, at most N at a time', async () => {
    const input = ['echo one', 'echo two; exit 3', 'sleep 0.5; echo three', 'echo four >&2', ''].join('\n');
    const r = await example('jobs.mjs', [s.image, '2'], input).done;
    const lines = r.stdout.trim().split('\n');
    for (const [n, out, code] of [
      [1, 'one', 0],
      [2, 'two', 3],
      [3, 'three', 0],
      [4, 'four', 0],
    ] as const) {
      expect(lines).toContain(`[job ${n}] ${out}`);
      expect(lines).toContain(`[job ${n}] exit=${code}`);
    }
    // The runner never had more than 2 jobs in flight: count starts minus exits along the output.
    let inFlight = 0;
    let most = 0;
    for (const l of lines) {
      if (/^\[job \d+\] start/.test(l)) most = Math.max(most, ++inFlight);
      if (/^\[job \d+\] exit=/.test(l)) inFlight--;
    }
    expect(most).toBe(2);
    expect(lines.at(-1)).toBe('4 jobs, 1 failed');
    expect(r.code).toBe(1);
    expect(await containerIds()).toEqual([]);
  });
});
