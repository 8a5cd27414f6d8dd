import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/berth.js';
import { EXAMPLES, type SdkStack, startProgram, startSdkStack } from './sdk-stack.js';

// The SDK as a user gets it: `pnpm pack` of @berth/client and the workspace packages it needs,
// installed with npm into a throwaway project outside the workspace, then type-checked against
// and run (an example) against a real stack. nats, zod and the kit's own dependencies come from
// the npm cache or the registry.
const run = promisify(execFile);
const PACKAGES = ['api', 'kit', 'client'];
let s: SdkStack;
let dir: string;
let app: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-sdk-pack-'));
  const tarballs = join(dir, 'tarballs');
  for (const p of PACKAGES) {
    await run('pnpm', ['pack', '--pack-destination', tarballs], { cwd: join(REPO_ROOT, 'packages', p) });
  }
  app = join(dir, 'app');
  await mkdir(app);
  await writeFile(join(app, 'package.json'), '{ "name": "sdk-app", "private": true, "type": "module" }\n');
  const files = (await readdir(tarballs)).map((f) => join(tarballs, f));
  expect(files).toHaveLength(3);
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...files], {
    cwd: app,
    timeout: 240_000,
  });
  for (const f of ['config.mjs', 'run-container.mjs']) await copyFile(join(EXAMPLES, f), join(app, f));
  s = await startSdkStack();
}, 360_000);
afterAll(async () => {
  await s?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

it('installs from the packed tarballs, not from the workspace', async () => {
  for (const p of PACKAGES) {
    const where = await realpath(join(app, 'node_modules', '@berth', p));
    expect(where.startsWith(app), `@berth/${p} resolves to ${where}`).toBe(true);
  }
});

it("type-checks a program against the package's published types", async () => {
  await writeFile(
    join(app, 'check.ts'),
    `import { type Berth, BerthError, Code, connect, type PullProgress } from '@berth/client';
const berth: Berth = await connect({ natsUrl: 'nats://127.0.0.1:4222', node: 'n1' });
const t = berth.images.pullWithProgress('busybox');
for await (const p of t) { const phase: PullProgress['phase'] = p.phase; console.log(phase); }
const { container } = await berth.containers.run({ image: (await t.result).image.name, cmd: ['true'] });
const code: number = (await berth.tasks.wait(container.id)).exitCode;
// @ts-expect-error cmd is an array of strings: this line fails only if the types are real
await berth.containers.create({ image: 'x', cmd: 'true' });
if (Code.NOT_FOUND !== 'NOT_FOUND' || !(new BerthError(Code.INTERNAL, 'x') instanceof Error)) throw new Error();
console.log(code);
`,
  );
  const tsc = join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const args = ['--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext'];
  args.push(
    '--moduleResolution',
    'nodenext',
    '--types',
    'node',
    '--typeRoots',
    join(REPO_ROOT, 'node_modules', '@types'),
  );
  const r = await run(process.execPath, [tsc, ...args, 'check.ts'], { cwd: app }).catch((e) => e);
  expect(r.stdout ?? '', r.stderr).toBe('');
}, 120_000);

it('runs the run-container example from the installed package against a real stack', async () => {
  const r = await startProgram(join(app, 'run-container.mjs'), [s.image, 'sh', '-c', 'echo packed; exit 3'], {
    env: s.env,
    cwd: app,
  }).done;
  expect(r.stdout, r.stderr).toBe('packed\n');
  expect(r.stderr).toContain(`pull ${s.image}: done`);
  expect(r.code).toBe(3);
});
