import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERTH_BIN, type RunResult, runBerth } from '../harness/berth.js';
import { openTerminal } from '../harness/command.js';
import { type Stack, waitFor } from '../harness/stack.js';
import { expectTtyExec, TTY_EXEC_SCRIPT } from './tty-exec.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// One view of a cluster: two nodes share one NATS and one Redis, and node a's CLI works with a
// container on node b as with its own. Both nodes run on this machine, so a's CLI runs in a
// mount namespace where b's whole installation (state root: CRI logs; run root: the monitors'
// attach sockets) is hidden under an empty tmpfs: whatever it shows of b's containers came over
// NATS from b's shim, not from b's files on a shared disk.
let f: UpFixture;
let a: Stack;
let b: Stack;
let image: string;
let hideB: string;

beforeAll(async () => {
  f = await startUpFixture({ nodes: [{}, {}], shared: true, parallel: true });
  [a, b] = f.stacks as [Stack, Stack];
  image = f.image;
  hideB = join(a.root, 'hide-b');
  writeFileSync(
    hideB,
    `#!/bin/sh\nexec unshare -m --propagation private sh -c 'mount -t tmpfs none "$0" && exec "$@"' '${b.root}' "$@"\n`,
  );
  chmodSync(hideB, 0o755);
  await Promise.all([a.waitForStatus((s) => s.ok), b.waitForStatus((s) => s.ok)]);
}, 180_000);

afterAll(() => f?.stop(), 60_000);

/** `berth ARGS` on node a, with b's files out of sight; `input` is its stdin. */
function onA(args: string[], input = ''): Promise<RunResult> {
  return runBerth(args, { env: a.env, input, wrapper: [hideB] });
}

const LINES = 20_000;

describe("node a's CLI and a container on node b", () => {
  it("hides b's files from a's CLI (the premise of every test here)", () => {
    const r = execFileSync(hideB, ['sh', '-c', `ls -A '${b.root}' | wc -l`], { encoding: 'utf8' });
    expect(r.trim()).toBe('0');
  });

  it('runs a container on b, lists it by node, follows its log, execs into it, stops it, sees its exit', async () => {
    const script = `seq 1 ${LINES}; echo ready; trap 'echo bye; exit 7' TERM; while true; do sleep 0.1; done`;
    const run = await onA(['run', '-d', '--name', 'web', '--node', b.nodeId, image, 'sh', '-c', script]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`Unable to find image '${image}' on node "${b.nodeId}", pulling`);
    const id = run.stdout.trim();

    // ps: this node's containers by default, b's with --node, all with --all-nodes; NODE shown.
    expect((await onA(['ps', '-q'])).stdout).toBe('');
    const psB = await onA(['ps', '--node', b.nodeId]);
    expect(psB.stdout.split('\n')[0]).toMatch(/STATUS +NODE +NAMES/);
    expect(psB.stdout).toMatch(new RegExp(`${id.slice(0, 12)} .* ${b.nodeId} +web\\n`));
    expect((await onA(['ps', '-q', '--all-nodes'])).stdout).toBe(`${id.slice(0, 12)}\n`);
    expect((await onA(['images', '-q', '--node', b.nodeId])).stdout.trim()).not.toBe('');
    expect((await onA(['images', '-q'])).stdout.trim()).toBe('');

    // logs -f from a: every line, in order, while the container keeps running.
    const follower = spawn(hideB, [process.execPath, BERTH_BIN, 'logs', '-f', 'web'], { env: a.env });
    let followed = '';
    follower.stdout.setEncoding('utf8').on('data', (d: string) => {
      followed += d;
    });
    const followerExit = new Promise<number | null>((r) => follower.on('close', r));
    await waitFor('the follower to see "ready"', () => followed.includes('ready\n'), 60_000);
    const seq = Array.from({ length: LINES }, (_, i) => `${i + 1}\n`).join('');
    expect(followed.startsWith(`${seq}ready\n`)).toBe(true);

    // exec (plain, -i, -it) into the container on b.
    expect((await onA(['exec', 'web', 'cat', '/proc/1/cmdline'])).stdout).toContain('sh');
    const exI = await onA(['exec', '-i', 'web', 'sh', '-c', 'read y; echo exec $y; exit 2'], 'one\n');
    expect(exI.stdout).toBe('exec one\n');
    expect(exI.code).toBe(2);
    const exIt = await onA(
      ['exec', '-it', 'web', 'sh', '-c', 'tty; read x; echo in-$x; exit 3'],
      'fortytwo\n',
    );
    expect(exIt.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(exIt.stdout).toContain('in-fortytwo');
    expect(exIt.code).toBe(3);

    // top reads /proc: of this node only, so it refuses a container elsewhere rather than lie.
    const top = await onA(['top', 'web']);
    expect(top.code).not.toBe(0);
    expect(top.stderr).toContain(`it runs on node "${b.nodeId}"`);
    const bad = await onA(['ps', '--node', 'no/such']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--node "no/such": a node id is 1-64 letters, digits, "_" or "-"');

    // stop from a: the trap's last words reach the follower, which ends with the container.
    const stop = await onA(['stop', 'web']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(await followerExit).toBe(0);
    expect(followed.endsWith('ready\nbye\n')).toBe(true);
    expect((await onA(['wait', 'web'])).stdout).toBe('7\n');
    expect((await onA(['ps', '-a', '--node', b.nodeId])).stdout).toMatch(/Exited \(7\)/);
    expect((await onA(['logs', '--tail', '2', 'web'])).stdout).toBe('ready\nbye\n');
    expect((await onA(['rm', 'web'])).code).toBe(0);
  });

  it('exec -it on a real terminal: the terminal size reaches the tty on b, input, the exit code', async () => {
    expect((await onA(['run', '-d', '--node', b.nodeId, '--name', 'ttyx', image, 'sleep', '300'])).code).toBe(
      0,
    );
    // a's CLI (b's files hidden) on a pseudo-terminal of 25x90 the test holds (openTerminal).
    const argv = [hideB, process.execPath, BERTH_BIN, 'exec', '-it', 'ttyx', 'sh', '-c'];
    const t = openTerminal([...argv, TTY_EXEC_SCRIPT], {
      env: a.env,
      rows: 25,
      cols: 90,
    });
    await expectTtyExec(t);
    expect((await onA(['rm', '-f', 'ttyx'])).code).toBe(0);
  });

  it('run, run -i and attach stream through b, a slow pipe loses nothing', async () => {
    const hello = await onA([
      'run',
      '--rm',
      '--node',
      b.nodeId,
      image,
      'sh',
      '-c',
      'echo out; echo err >&2; exit 5',
    ]);
    expect(hello.stdout).toBe('out\n');
    expect(hello.stderr).toBe('err\n');
    expect(hello.code).toBe(5);
    const cat = await onA(
      ['run', '-i', '--rm', '--node', b.nodeId, image, 'sh', '-c', 'cat; exit 6'],
      'in and out\n',
    );
    expect(cat.stdout).toBe('in and out\n');
    expect(cat.code).toBe(6);

    const d = await onA([
      'run',
      '-d',
      '-i',
      '--node',
      b.nodeId,
      '--name',
      'att',
      image,
      'sh',
      '-c',
      'read x; echo got $x; exit 9',
    ]);
    expect(d.code, d.stderr).toBe(0);
    const at = await onA(['attach', 'att'], 'two\n');
    expect(at.stdout).toBe('got two\n');
    expect(at.code).toBe(9);

    // A reader that takes nothing for a second while the log streams: berth waits for it.
    const chatty = await onA([
      'run',
      '-d',
      '--node',
      b.nodeId,
      '--name',
      'chatty',
      image,
      'seq',
      '1',
      '100000',
    ]);
    expect(chatty.code, chatty.stderr).toBe(0);
    expect((await onA(['wait', 'chatty'])).stdout).toBe('0\n');
    const bytes = Array.from({ length: 100_000 }, (_, i) => String(i + 1).length + 1).reduce(
      (x, y) => x + y,
      0,
    );
    const piped = execFileSync(
      'bash',
      [
        '-c',
        `'${hideB}' '${process.execPath}' '${BERTH_BIN}' logs chatty | (sleep 1; wc -c); echo "status \${PIPESTATUS[0]}"`,
      ],
      { env: a.env, encoding: 'utf8' },
    );
    expect(piped).toBe(`${bytes}\nstatus 0\n`);
    expect((await onA(['rm', 'att', 'chatty'])).code).toBe(0);
  });

  it('names node b when it is down', async () => {
    expect(
      (await onA(['run', '-d', '--node', b.nodeId, '--name', 'orphan', image, 'sleep', '300'])).code,
    ).toBe(0);
    const down = await b.berth('down');
    expect(down.code, down.stderr).toBe(0);
    for (const args of [
      ['logs', 'orphan'],
      ['images', '--node', b.nodeId],
      ['stop', '-t', '1', 'orphan'],
    ]) {
      const r = await onA(args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`node "${b.nodeId}" does not answer (is it down?)`);
    }
    const up = await b.berth('up');
    expect(up.code, up.stderr).toBe(0);
    await b.waitForStatus((s) => s.ok);
  });
});
