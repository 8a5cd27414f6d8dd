import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BERTH_VERSION } from '@berth/api/version';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The two launchers: dist/berth (native/berth.c, which scripts/setup.sh links /usr/local/bin/berth
// to) and bin/berth (the sh launcher package.json's `bin` names), each run through a link on PATH
// with a `node` first on PATH that prints what it was started with instead of running berth.js.
// No supervisor answers them (BERTH_RUN_ROOT is an empty directory): both start node.
const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const launchers = [
  { name: 'dist/berth (the built client)', file: join(pkg, 'dist', 'berth') },
  { name: 'bin/berth (the sh launcher)', file: join(pkg, 'bin', 'berth') },
];
const berthJs = join(pkg, 'bin', 'berth.js');
let root: string;
let fakeBin: string;
let caFile: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'berth-launcher-'));
  fakeBin = join(root, 'fake');
  mkdirSync(fakeBin);
  writeFileSync(
    join(fakeBin, 'node'),
    '#!/bin/sh\nprintf "arg=%s\\n" "$@"\nenv | grep _EXTRA_CA_CERTS= | sort\n',
  );
  chmodSync(join(fakeBin, 'node'), 0o755);
  caFile = join(root, 'ca.pem');
  writeFileSync(caFile, '');
  // As setup.sh installs it: a link on PATH, in another directory.
  for (const [i, l] of launchers.entries()) {
    mkdirSync(join(root, `path${i}`));
    symlinkSync(l.file, join(root, `path${i}`, 'berth'));
  }
  mkdirSync(join(root, 'run'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.each(launchers.map((l, i) => ({ ...l, i })))('$name', ({ file, i }) => {
  /** What the fake node got from the launcher run with `env` (on top of PATH), as lines. */
  function started(env: NodeJS.ProcessEnv, args: string[] = ['ps', '-a']): string[] {
    const { NODE_EXTRA_CA_CERTS: _n, BERTH_EXTRA_CA_CERTS: _b, NODE_OPTIONS: _o, ...base } = process.env;
    return execFileSync(join(root, `path${i}`, 'berth'), args, {
      encoding: 'utf8',
      env: {
        ...base,
        PATH: `${fakeBin}:${process.env.PATH ?? ''}`,
        BERTH_RUN_ROOT: join(root, 'run'),
        ...env,
      },
    })
      .trimEnd()
      .split('\n');
  }

  /** The *_EXTRA_CA_CERTS variables the fake node got. */
  const vars = (env: NodeJS.ProcessEnv) => started(env).filter((l) => !l.startsWith('arg='));

  it('starts node on berth.js beside its link target, passing every argument as it was', () => {
    expect(started({}, ['run', 'a b', '', '--x=$HOME'])).toEqual([
      `arg=${berthJs}`,
      'arg=run',
      'arg=a b',
      'arg=',
      'arg=--x=$HOME',
    ]);
  });

  it('moves NODE_EXTRA_CA_CERTS naming a readable file to BERTH_EXTRA_CA_CERTS', () => {
    expect(vars({ NODE_EXTRA_CA_CERTS: caFile })).toEqual([`BERTH_EXTRA_CA_CERTS=${caFile}`]);
  });

  it('moves it whatever the path holds: spaces, a symbolic link (kept as given)', () => {
    const spaced = join(root, `dir with spaces ${i}`, 'my ca.pem');
    mkdirSync(dirname(spaced));
    writeFileSync(spaced, '');
    expect(vars({ NODE_EXTRA_CA_CERTS: spaced })).toEqual([`BERTH_EXTRA_CA_CERTS=${spaced}`]);
    const link = join(root, `ca-link-${i}.pem`);
    symlinkSync(spaced, link);
    expect(vars({ NODE_EXTRA_CA_CERTS: link })).toEqual([`BERTH_EXTRA_CA_CERTS=${link}`]);
    // OpenSSL's store: the CLI adds the file to it as Node would.
    expect(vars({ NODE_EXTRA_CA_CERTS: link, NODE_OPTIONS: '--use-openssl-ca' })).toEqual([
      `BERTH_EXTRA_CA_CERTS=${link}`,
    ]);
  });

  it('leaves it to node when node would not load it', () => {
    const missing = join(root, 'missing.pem');
    expect(vars({ NODE_EXTRA_CA_CERTS: missing })).toEqual([`NODE_EXTRA_CA_CERTS=${missing}`]);
    expect(vars({ NODE_EXTRA_CA_CERTS: root })).toEqual([`NODE_EXTRA_CA_CERTS=${root}`]);
    const dangling = join(root, `dangling-${i}.pem`);
    symlinkSync(missing, dangling);
    expect(vars({ NODE_EXTRA_CA_CERTS: dangling })).toEqual([`NODE_EXTRA_CA_CERTS=${dangling}`]);
    // A BERTH_EXTRA_CA_CERTS the launcher did not set never reaches berth.
    expect(vars({ BERTH_EXTRA_CA_CERTS: caFile })).toEqual([]);
  });

  it('leaves it to node when NODE_OPTIONS preloads code, which runs before berth restores it', () => {
    for (const opts of [
      '--require /opt/apm/start.js',
      '--require=/opt/apm/start.js',
      '-r /opt/apm/start.js',
      '--max-old-space-size=100 -r apm',
      '--import=@opentelemetry/auto',
      '--import apm.mjs --no-warnings',
      '--experimental-loader ./hooks.mjs',
      '--loader=./hooks.mjs',
    ]) {
      expect(vars({ NODE_EXTRA_CA_CERTS: caFile, NODE_OPTIONS: opts }), opts).toEqual([
        `NODE_EXTRA_CA_CERTS=${caFile}`,
      ]);
    }
    // Options that load no code do not keep it.
    expect(
      vars({ NODE_EXTRA_CA_CERTS: caFile, NODE_OPTIONS: '--max-old-space-size=100 --no-warnings' }),
    ).toEqual([`BERTH_EXTRA_CA_CERTS=${caFile}`]);
  });

  it('runs the real CLI', () => {
    const out = execFileSync(file, ['--version'], {
      encoding: 'utf8',
      env: {
        ...process.env,
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
        BERTH_RUN_ROOT: join(root, 'run'),
      },
    });
    expect(out).toBe(`berth ${BERTH_VERSION}\n`);
  });
});
