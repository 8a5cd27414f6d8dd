import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeRootfs, makeSpec, removeTestCgroups } from '../testing/fixture.js';
import { Runc, runcFailureCode } from './runc.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-runc-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A runc stand-in: a script with this body. */
async function fakeRunc(name: string, body: string): Promise<string> {
  const path = join(root, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

/** The BerthError `p` rejects with (fails the test if it resolves or throws something else). */
async function failure(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => new Error('it succeeded'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

describe('Runc error codes', () => {
  it('a runc killed at its deadline is DEADLINE_EXCEEDED, naming the task and the deadline', async () => {
    const runc = new Runc(join(root, 'state'), await fakeRunc('hang', 'sleep 30'), 200);
    const err = await failure(runc.kill('c1', 'SIGTERM', false));
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toMatch(/^task "c1": runc kill failed: .* did not end within 200 ms: killed$/);
  });

  it("maps runc's words: gone or not running NOT_FOUND, a refusal in its state FAILED_PRECONDITION, any other failure INTERNAL", () => {
    // runc 1.1.5's messages (libcontainer/error.go, start.go, delete.go, kill's signal to an init
    // that exited), runc 1.0's for an absent container, and failures of no state at all.
    const cases: [string, Code][] = [
      ['container does not exist', Code.NOT_FOUND],
      ['container "c1" does not exist', Code.NOT_FOUND],
      ['container not running', Code.NOT_FOUND],
      ['unable to signal init: no such process', Code.NOT_FOUND],
      ['os: process already finished', Code.NOT_FOUND],
      ['container not paused', Code.FAILED_PRECONDITION],
      ['container still running', Code.FAILED_PRECONDITION],
      ['cannot start a container that has stopped', Code.FAILED_PRECONDITION],
      ['cannot start an already running container', Code.FAILED_PRECONDITION],
      ['cannot delete container c1 that is not stopped: running', Code.FAILED_PRECONDITION],
      ['invalid state transition from running to created', Code.FAILED_PRECONDITION],
      // A missing cgroup subsystem is no missing container (the old pattern "not exist" said so).
      ['cgroup: subsystem does not exist', Code.INTERNAL],
      ['lstat /sys/fs/cgroup/devices/x/c1: no such file or directory', Code.INTERNAL],
      ["invalid character 'g' looking for beginning of value", Code.INTERNAL],
      ['unable to freeze', Code.INTERNAL],
      ['unable to signal init: operation not permitted', Code.INTERNAL],
      ['panic: runtime error: invalid memory address or nil pointer dereference', Code.INTERNAL],
    ];
    for (const [message, code] of cases) expect([message, runcFailureCode(message)]).toEqual([message, code]);
  });

  // Stand-ins: a real runc cannot be made to crash on demand. They check the message only.
  it("a runc that crashed is INTERNAL, with the Go runtime's panic line or the signal that ended it", async () => {
    const panicked = new Runc(
      root,
      await fakeRunc(
        'panic',
        'printf "panic: runtime error: index out of range [1] with length 1\\n\\ngoroutine 1 [running]:\\nmain.main()\\n\\t/src/main.go:9 +0x1d\\n" >&2; exit 2',
      ),
    );
    const p = await failure(panicked.kill('c1', 'SIGTERM', false));
    expect([p.code, p.message]).toEqual([
      Code.INTERNAL,
      'task "c1": runc kill failed: panic: runtime error: index out of range [1] with length 1',
    ]);
    const killed = new Runc(root, await fakeRunc('segv', 'kill -SEGV $$'));
    const k = await failure(killed.kill('c1', 'SIGTERM', false));
    expect([k.code, k.message]).toEqual([Code.INTERNAL, 'task "c1": runc kill failed: killed by SIGSEGV']);
  });
});

/**
 * `runc kill` by the real runc (the host's), on containers it made: the cases it answers "gone" or
 * "not running", and failures of a state it is pointed at that it cannot use. What the shim's kill
 * (ProcessTable.kill) and every caller above it make of a kill follows from these codes.
 */
describe('Runc kill with the real runc', () => {
  const group = `runc-${process.pid}`;
  let stateRoot: string;
  let bundle: string;
  let runc: Runc;
  const made: string[] = [];

  /** `runc create` of a `sleep 300` container (its init waits for start); returns its id. */
  const create = async (name: string): Promise<string> => {
    const id = `${name}-${process.pid}`;
    const spec = await makeSpec(['sleep', '300'], { cgroupsPath: `/berth-test/${group}/${id}` });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    execFileSync('runc', ['--root', stateRoot, 'create', '--bundle', bundle, id], { stdio: 'ignore' });
    made.push(id);
    return id;
  };
  const status = async (id: string) => (await runc.state(id))?.status;
  const until = async (what: string, ok: () => Promise<boolean>) => {
    for (let i = 0; i < 100; i++) {
      if (await ok()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${what} within 5 s`);
  };

  beforeAll(async () => {
    stateRoot = join(root, 'real-state');
    bundle = join(root, 'bundle');
    await makeRootfs(join(bundle, 'rootfs'));
    runc = new Runc(stateRoot);
  });

  afterAll(async () => {
    for (const id of made) {
      try {
        execFileSync('runc', ['--root', stateRoot, 'delete', '--force', id], { stdio: 'ignore' });
      } catch {
        // deleted by its test
      }
    }
    await removeTestCgroups(group);
  });

  it('signals a created container; a stopped one is NOT_FOUND (not running), as is one runc has not', async () => {
    const id = await create('stopped');
    expect(await status(id)).toBe('created');
    // runc signals the init of a created container (it waits on the exec fifo): no error.
    await runc.kill(id, 'SIGKILL', false);
    await until(`${id} stopped`, async () => (await status(id)) === 'stopped');
    const stopped = await failure(runc.kill(id, 'SIGTERM', false));
    expect([stopped.code, stopped.message]).toEqual([
      Code.NOT_FOUND,
      `task "${id}": runc kill failed: container not running`,
    ]);
    const absent = await failure(runc.kill(`absent-${process.pid}`, 'SIGTERM', false));
    expect([absent.code, absent.message]).toEqual([
      Code.NOT_FOUND,
      `task "absent-${process.pid}": runc kill failed: container does not exist`,
    ]);
    await runc.delete(id, false);
  });

  it("a kill of a running container that fails on a broken state is INTERNAL, with runc's message", async () => {
    const id = await create('broken');
    await runc.start(id);
    expect(await status(id)).toBe('running');
    const stateFile = join(stateRoot, id, 'state.json');
    const good = await readFile(stateFile, 'utf8');
    try {
      // Its cgroups moved away under runc: kill --all cannot freeze them (runc 1.1 only warns) nor
      // list their processes, and fails.
      const state = JSON.parse(good) as { cgroup_paths: Record<string, string> };
      for (const [k, v] of Object.entries(state.cgroup_paths))
        state.cgroup_paths[k] = v.replace(`/berth-test/${group}/`, `/berth-test/${group}-moved/`);
      await writeFile(stateFile, JSON.stringify(state));
      const cgroups = await failure(runc.kill(id, 'SIGKILL', true));
      expect(cgroups.code, cgroups.message).toBe(Code.INTERNAL);
      expect(cgroups.message).toMatch(
        new RegExp(
          `^task "${id}": runc kill failed: .*/berth-test/${group}-moved/${id}.*: no such file or directory$`,
        ),
      );
      // A state file runc cannot read at all.
      await writeFile(stateFile, '{"id": ');
      const unreadable = await failure(runc.kill(id, 'SIGKILL', false));
      expect([unreadable.code, unreadable.message]).toEqual([
        Code.INTERNAL,
        `task "${id}": runc kill failed: unexpected EOF`,
      ]);
    } finally {
      await writeFile(stateFile, good);
    }
    // Still running through all that: neither failure was a container that had stopped.
    expect(await status(id)).toBe('running');
    await runc.kill(id, 'SIGKILL', true);
    await until(`${id} stopped`, async () => (await status(id)) === 'stopped');
    await runc.delete(id, false);
  });
});
