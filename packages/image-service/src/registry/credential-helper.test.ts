import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTestHelper } from '../testing/credential-helper.js';
import { credentialsFromDockerConfig } from './auth.js';
import { helperErase, helperGet, helperProgram, helperStore } from './credential-helper.js';

let dir: string;
let savedPath: string | undefined;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-cred-'));
  await writeTestHelper(dir, 'berthtest');
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${process.env.PATH ?? ''}`;
});
afterAll(async () => {
  process.env.PATH = savedPath;
  await rm(dir, { recursive: true, force: true });
});

const code = async (p: Promise<unknown>) => {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BerthError);
  return e as BerthError;
};

describe('docker credential helpers', () => {
  it('stores, gets and erases through docker-credential-NAME; "<token>" means an identity token', async () => {
    expect(await helperGet('berthtest', 'r.example')).toBeUndefined();
    await helperStore('berthtest', 'r.example', 'alice', 's3cret');
    expect(await helperGet('berthtest', 'r.example')).toEqual({ username: 'alice', password: 's3cret' });
    await helperStore('berthtest', 'tok.example', '<token>', 'refresh-123');
    expect(await helperGet('berthtest', 'tok.example')).toEqual({ identityToken: 'refresh-123' });
    await helperErase('berthtest', 'r.example');
    expect(await helperGet('berthtest', 'r.example')).toBeUndefined();
    // The server goes on stdin, never on the command line.
    const log = await readFile(join(dir, 'calls.log'), 'utf8');
    expect(log).toContain('get r.example\n');
    expect(log).toContain('store {"ServerURL":"r.example","Username":"alice",');
  });

  it('config.json: credHelpers for the host first, then credsStore, then auths', async () => {
    await helperStore('berthtest', 'helped.example', 'bob', 'pw-helper');
    await helperStore('berthtest', 'https://index.docker.io/v1/', 'hub', 'pw-hub');
    const file = join(dir, 'config.json');
    const auth = Buffer.from('carol:pw-file').toString('base64');
    await writeFile(
      file,
      JSON.stringify({
        auths: { 'helped.example': { auth }, 'plain.example': { auth } },
        credHelpers: { 'helped.example': 'berthtest' },
      }),
    );
    expect(await credentialsFromDockerConfig('helped.example', file)).toEqual({
      username: 'bob',
      password: 'pw-helper',
    });
    expect(await credentialsFromDockerConfig('plain.example', file)).toEqual({
      username: 'carol',
      password: 'pw-file',
    });
    await writeFile(file, JSON.stringify({ auths: { 'plain.example': { auth } }, credsStore: 'berthtest' }));
    // With a credsStore, auths holds no secrets for docker: the store answers, or nothing does.
    expect(await credentialsFromDockerConfig('plain.example', file)).toBeUndefined();
    expect(await credentialsFromDockerConfig('docker.io', file)).toEqual({
      username: 'hub',
      password: 'pw-hub',
    });
  });

  it('a missing, failing or badly named helper is FAILED_PRECONDITION/INVALID_ARGUMENT naming it', async () => {
    const missing = await code(helperGet('nosuch', 'r.example'));
    expect(missing.code).toBe(Code.FAILED_PRECONDITION);
    expect(missing.message).toBe(
      'credential helper docker-credential-nosuch for r.example: not found in PATH',
    );
    const failing = await code(helperGet('berthtest', 'fail.example'));
    expect(failing.code).toBe(Code.FAILED_PRECONDITION);
    expect(failing.message).toContain(
      'docker-credential-berthtest get for fail.example exited 2: keychain locked',
    );
    expect(() => helperProgram('../bin/sh')).toThrow(/not a plain name/);
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ credsStore: '/bin/sh' }));
    expect((await code(credentialsFromDockerConfig('r.example', file))).code).toBe(Code.INVALID_ARGUMENT);
  });
});
