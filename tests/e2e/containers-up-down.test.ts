import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBerth } from '../harness/berth.js';
import { alive, type Stack, waitFor } from '../harness/stack.js';
import { startUpFixture, type UpFixture } from './up-fixture.js';

// The whole stack restarted: `berth down` leaves containers running; while everything is down one
// of them exits; `berth up` again finds the running one and reports the other's exit code.
let f: UpFixture;
let stack: Stack;
let image: string;

beforeAll(async () => {
  f = await startUpFixture({ nodes: [{}] });
  [stack] = f.stacks as [Stack];
  image = f.image;
  const pull = await stack.berth('pull', image);
  expect(pull.code, pull.stderr).toBe(0);
}, 120_000);
afterAll(() => f?.stop(), 60_000);

async function inspect(ref: string) {
  const r = await stack.berth('inspect', ref);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout)[0];
}

describe('berth down / up', () => {
  it('keeps containers running and reports the exit that happened while down', async () => {
    const ctl = join(stack.root, 'ctl');
    await mkdir(ctl, { recursive: true });
    const a = await stack.berth('run', '-d', '--name', 'stays', image, 'sleep', '300');
    expect(a.code, a.stderr).toBe(0);
    const b = await stack.berth(
      'run',
      '-d',
      '--name',
      'goes',
      '-v',
      `${ctl}:/ctl`,
      image,
      'sh',
      '-c',
      'while [ ! -e /ctl/go ]; do sleep 0.05; done; echo bye; exit 7',
    );
    expect(b.code, b.stderr).toBe(0);
    const pid = (await inspect('stays')).task.pid as number;

    const down = await stack.berth('down');
    expect(down.code, down.stderr).toBe(0);
    expect(() => process.kill(pid, 0)).not.toThrow();
    await writeFile(join(ctl, 'go'), '');

    const up = await stack.berth('up');
    expect(up.code, up.stderr).toBe(0);
    const goes = await waitFor('the exit to be reported', async () => {
      const r = await stack.berth('inspect', 'goes');
      const t = r.code === 0 ? JSON.parse(r.stdout)[0].task : undefined;
      return t?.status === 'stopped' ? t : undefined;
    });
    expect(goes).toMatchObject({ exitCode: 7, reason: 'Error' });
    expect((await stack.berth('logs', 'goes')).stdout).toBe('bye\n');
    const stays = await inspect('stays');
    expect(stays.status).toBe('running');
    expect(stays.task.pid).toBe(pid);
    expect((await stack.berth('exec', 'stays', 'echo', 'hi')).stdout).toBe('hi\n');
  });
});

describe('the berth up supervisor', () => {
  it('restarts a SIGKILLed shim agent and task-service; containers live on and an exit meanwhile is reported', async () => {
    const ctl = join(stack.root, 'ctl-sup');
    await mkdir(ctl, { recursive: true });
    const a = await stack.berth('run', '-d', '--name', 'sup-stays', image, 'sleep', '300');
    expect(a.code, a.stderr).toBe(0);
    const b = await stack.berth(
      'run',
      '-d',
      '--name',
      'sup-goes',
      '-v',
      `${ctl}:/ctl`,
      image,
      'sh',
      '-c',
      'while [ ! -e /ctl/go ]; do sleep 0.05; done; echo gone; exit 9',
    );
    expect(b.code, b.stderr).toBe(0);
    const pid = (await inspect('sup-stays')).task.pid as number;
    const victims = stack.state()!.children.filter((c) => c.name === 'shim' || c.name === 'task-service');
    expect(victims).toHaveLength(2);
    for (const v of victims) process.kill(v.pid as number, 'SIGKILL');
    // The container exits while its agent is dead (the supervisor waits at least 250 ms to restart).
    await writeFile(join(ctl, 'go'), '');

    await stack.waitForStatus((st) =>
      victims.every((v) => {
        const inst = st.services.find((x) => x.service === v.name)?.instances ?? [];
        return st.ok && inst.length === 1 && inst[0]?.pid !== v.pid;
      }),
    );
    const goes = await waitFor('the exit to be reported', async () => {
      const r = await stack.berth('inspect', 'sup-goes');
      const t = r.code === 0 ? JSON.parse(r.stdout)[0].task : undefined;
      return t?.status === 'stopped' ? t : undefined;
    });
    expect(goes).toMatchObject({ exitCode: 9 });
    expect((await stack.berth('logs', 'sup-goes')).stdout).toBe('gone\n');
    const stays = await inspect('sup-stays');
    expect(stays.status).toBe('running');
    expect(stays.task.pid).toBe(pid);
    expect((await stack.berth('exec', 'sup-stays', 'echo', 'still here')).stdout).toBe('still here\n');
  });
});

describe('berth down --containers', () => {
  it('stops the live containers of every namespace first, their exits recorded; up finds them stopped', async () => {
    const other = (...args: string[]) =>
      runBerth(args, { env: { ...stack.env, BERTH_NAMESPACE: 'other' }, timeoutMs: 60_000 });
    const a = await stack.berth('run', '-d', '--name', 'tidy', image, 'sleep', '300');
    expect(a.code, a.stderr).toBe(0);
    const b = await other('run', '-d', '--name', 'tidy-other', image, 'sleep', '300');
    expect(b.code, b.stderr).toBe(0);
    const pids = [(await inspect('tidy')).task.pid as number];
    pids.push(JSON.parse((await other('inspect', 'tidy-other')).stdout)[0].task.pid as number);

    const down = await stack.berth('down', '--containers', '-t', '1');
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain(`container default/${a.stdout.trim().slice(0, 12)}: stopped`);
    expect(down.stdout).toContain(`container other/${b.stdout.trim().slice(0, 12)}: stopped`);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);

    const up = await stack.berth('up');
    expect(up.code, up.stderr).toBe(0);
    // sleep as pid 1 ignores SIGTERM: the grace period ran out and SIGKILL ended both.
    expect((await inspect('tidy')).task).toMatchObject({ status: 'stopped', exitCode: 137 });
    const o = JSON.parse((await other('inspect', 'tidy-other')).stdout)[0];
    expect(o.task).toMatchObject({ status: 'stopped', exitCode: 137 });
    expect((await other('rm', 'tidy-other')).code).toBe(0);
  });

  it('refuses a bad -t before stopping anything', async () => {
    const r = await stack.berth('down', '--containers', '-t', 'soon');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid --time value "soon"');
    expect((await stack.status()).json.ok).toBe(true);
  });
});
