import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './servers.js';

const run = promisify(execFile);

/** A certificate and its private key, as file paths. */
export interface CertFiles {
  cert: string;
  key: string;
}

/**
 * A certificate authority made for one test run, with a server certificate (for `localhost` and
 * 127.0.0.1) and a client certificate it signed. `otherCa` is an unrelated CA, to show that a
 * client trusting the wrong authority is refused.
 */
export interface TestPki {
  dir: string;
  /** PEM file of the CA that signed `server` and `client`. */
  ca: string;
  /** PEM file of another CA that signed nothing here. */
  otherCa: string;
  /** Valid for serverAuth and clientAuth: Redis replicas present it to their primary. */
  server: CertFiles;
  /** Valid for clientAuth, with the common name `berth-test-client`. */
  client: CertFiles;
  /** Makes one more certificate signed by the CA (e.g. another client). */
  issue(name: string, usage: 'server' | 'client'): Promise<CertFiles>;
  /** Removes the files. */
  remove(): Promise<void>;
}

// P-256 keys: generating them costs next to nothing, unlike RSA on a loaded machine.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string): Promise<{ pem: string; key: string }> {
  const pem = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await run('openssl', [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    key,
    '-out',
    pem,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return { pem, key };
}

/**
 * Makes a test PKI with `openssl` in a temp directory: nothing is checked in, and every run has
 * keys no other run shares.
 */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await tempDir('pki');
  const [ca, other] = await Promise.all([makeCa(dir, 'berth-test-ca'), makeCa(dir, 'berth-other-ca')]);
  const issue = async (name: string, usage: 'server' | 'client'): Promise<CertFiles> => {
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const cert = join(dir, `${name}.pem`);
    const ext = join(dir, `${name}.ext`);
    await run('openssl', ['req', '-new', ...EC_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
    const lines =
      usage === 'server'
        ? ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth,clientAuth']
        : ['extendedKeyUsage=clientAuth'];
    await writeFile(ext, `${lines.join('\n')}\nbasicConstraints=CA:FALSE\n`);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.pem,
      '-CAkey',
      ca.key,
      '-days',
      '2',
      '-extfile',
      ext,
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-out',
      cert,
    ]);
    return { cert, key };
  };
  const [server, client] = await Promise.all([
    issue('localhost', 'server'),
    issue('berth-test-client', 'client'),
  ]);
  return {
    dir,
    ca: ca.pem,
    otherCa: other.pem,
    server,
    client,
    issue,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
