/**
 * A nats-server in JWT (operator) mode for tests of NATS credentials files: generates an
 * operator, an account and a user with nats.js's nkeys, signs their JWTs, and writes the user's
 * `.creds` file the way `nsc` does.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNats, type TestServer } from '@berth/testing';
import { nkeys } from 'nats';

interface KeyPair {
  getPublicKey(): string;
  getSeed(): Uint8Array;
  sign(d: Uint8Array): Uint8Array;
}

function jwt(issuer: KeyPair, sub: string, nats: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const claims = {
    jti: randomBytes(16).toString('hex'),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name: 'berth-e2e',
    sub,
    nats: { ...nats, version: 2 },
  };
  const data = `${b64({ typ: 'JWT', alg: 'ed25519-nkey' })}.${b64(claims)}`;
  return `${data}.${Buffer.from(issuer.sign(new TextEncoder().encode(data))).toString('base64url')}`;
}

/** Starts the server; `credsFile` lets a client in, anything else is refused. */
export async function startJwtNats(): Promise<TestServer & { credsFile: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-e2e-jwt-'));
  const operator = nkeys.createOperator() as KeyPair;
  const account = nkeys.createAccount() as KeyPair;
  const user = nkeys.createUser() as KeyPair;
  const unlimited = { subs: -1, data: -1, payload: -1 };
  writeFileSync(join(dir, 'operator.jwt'), jwt(operator, operator.getPublicKey(), { type: 'operator' }));
  const accountJwt = jwt(operator, account.getPublicKey(), {
    type: 'account',
    limits: { ...unlimited, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
  });
  const credsFile = join(dir, 'user.creds');
  writeFileSync(
    credsFile,
    `-----BEGIN NATS USER JWT-----\n${jwt(account, user.getPublicKey(), { type: 'user', ...unlimited })}\n` +
      `------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n` +
      `${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`,
    { mode: 0o600 },
  );
  const server = await startNats({
    jetstream: false,
    config:
      `operator: ${JSON.stringify(join(dir, 'operator.jwt'))}\nresolver: MEMORY\n` +
      `resolver_preload: { ${account.getPublicKey()}: ${JSON.stringify(accountJwt)} }`,
  });
  const stop = server.stop.bind(server);
  return Object.assign(server, {
    credsFile,
    async stop() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}
