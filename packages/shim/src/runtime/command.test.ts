import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommandOffLoop } from './command.js';
import { conmonSkipsLogSync } from './conmon.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-command-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function script(name: string, body: string): Promise<string> {
  const path = join(root, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

describe('runCommandOffLoop (runc by the spawn addon)', () => {
  it('passes the arguments and stdin, returns stdout, stderr and the exit status', async () => {
    const file = await script('args.sh', 'printf "%s|" "$@"; cat >&2; exit 7');
    const r = await runCommandOffLoop(file, ['--root', '/x y', 'delete', 'c1'], 10_000, 'in');
    expect(r).toEqual({ code: 7, signal: null, stdout: '--root|/x y|delete|c1|', stderr: 'in' });
  });

  it('stdin is at its end at once when no input is given (as spawn with stdin ignored)', async () => {
    const file = await script('read.sh', 'cat; echo done');
    expect((await runCommandOffLoop(file, [], 10_000)).stdout).toBe('done\n');
  });

  it('a command past its deadline is killed, and its stderr says so', async () => {
    const file = await script('hang.sh', 'echo started >&2; sleep 30');
    const r = await runCommandOffLoop(file, [], 200);
    expect(r.code).toBe(-1);
    expect(r.signal).toBe('SIGKILL');
    expect(r.timedOut).toBe(true);
    // What the script wrote before the kill depends on how soon it ran: only the note is certain.
    expect(r.stderr).toContain(`${file} did not end within 200 ms: killed\n`);
  });

  it('a bare name is run by Node (PATH is searched), a missing file rejects with ENOENT', async () => {
    expect((await runCommandOffLoop('echo', ['a', 'b'], 10_000)).stdout).toBe('a b\n');
    await expect(runCommandOffLoop(join(root, 'missing'), [], 10_000)).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});

describe('conmonSkipsLogSync', () => {
  it("is true for a conmon whose --help lists --no-sync-log, false for one without it or one that can't run", async () => {
    const old = await script('conmon-old', 'echo "  --exit-dir  Path to the directory"');
    const current = await script('conmon-new', 'echo "  --no-sync-log  Do not manually call sync on logs"');
    expect(await conmonSkipsLogSync(old)).toBe(false);
    expect(await conmonSkipsLogSync(current)).toBe(true);
    expect(await conmonSkipsLogSync(join(root, 'no-conmon'))).toBe(false);
  });

  it('asks once per binary: again after it changed (a conmon downgraded in place), not before', async () => {
    const file = await script('conmon-replaced', 'echo >>"$0.runs"; echo "  --no-sync-log  Do not sync"');
    const runs = async () => (await readFile(`${file}.runs`, 'utf8')).length;
    expect(await conmonSkipsLogSync(file)).toBe(true);
    expect(await conmonSkipsLogSync(file)).toBe(true);
    expect(await runs()).toBe(1);
    // The same file rewritten without the flag, its mtime moved on as an install's would.
    await writeFile(file, '#!/bin/sh\necho >>"$0.runs"; echo "  --exit-dir  Path"\n');
    await utimes(file, new Date(), new Date(Date.now() + 5_000));
    expect(await conmonSkipsLogSync(file)).toBe(false);
    expect(await runs()).toBe(2);
  });

  it.runIf(existsSync('/usr/bin/conmon'))('agrees with the installed conmon', async () => {
    let help = '';
    try {
      help = execFileSync('/usr/bin/conmon', ['--help'], { encoding: 'utf8' });
    } catch (err) {
      help = String((err as { stdout?: unknown }).stdout ?? '');
    }
    expect(await conmonSkipsLogSync('/usr/bin/conmon')).toBe(help.includes('--no-sync-log'));
  });
});
