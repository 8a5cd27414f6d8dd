import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { BerthError, Code } from '@berth/api';
import * as z from 'zod';

/**
 * The secrets of the embedded servers `berth up` runs: the NATS user's password and Redis's
 * `requirepass`. Generated once, kept in <stateRoot>/embedded/credentials.json (0600 in a 0700
 * directory) and reused, so a restarted stack keeps the same secrets.
 */
export const EmbeddedCredentials = z.object({
  version: z.literal(1),
  nats: z.object({ user: z.string().regex(/^[A-Za-z0-9_-]+$/), password: z.string().min(32) }),
  redis: z.object({ password: z.string().min(32) }),
});
export type EmbeddedCredentials = z.infer<typeof EmbeddedCredentials>;

/** The NATS user the embedded server knows; only its password is secret. */
export const EMBEDDED_NATS_USER = 'berth';

/** 32 random bytes, base64url: URL-, shell- and config-file-safe without quoting. */
function secret(): string {
  return randomBytes(32).toString('base64url');
}

function readCredentials(file: string): EmbeddedCredentials {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `credentials file ${file} is not valid JSON (${(err as Error).message}): remove it to generate new credentials`,
    );
  }
  const parsed = EmbeddedCredentials.safeParse(raw);
  if (!parsed.success) {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `credentials file ${file} is invalid (${parsed.error.issues[0]?.path.join('.')}: ` +
        `${parsed.error.issues[0]?.message}): remove it to generate new credentials`,
    );
  }
  return parsed.data;
}

/**
 * Returns the embedded servers' credentials, creating the file on first use. Creation is atomic
 * and never overwrites: the secrets go to a temp file (0600) which is hard-linked to the final
 * name, so a concurrent `berth up` either wins or reads the winner's file, and a crash leaves
 * either no file or a whole one. An existing file and its directory are narrowed to 0600/0700 in
 * case someone widened them.
 */
export function embeddedCredentials(file: string): EmbeddedCredentials {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  if (existsSync(file)) {
    const creds = readCredentials(file);
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    return creds;
  }
  const fresh: EmbeddedCredentials = {
    version: 1,
    nats: { user: EMBEDDED_NATS_USER, password: secret() },
    redis: { password: secret() },
  };
  return createOnce(file, fresh, readCredentials);
}

/**
 * Writes `fresh` as JSON to `file` unless the file exists, atomically and never overwriting: the
 * content goes to a temp file (0600, synced) hard-linked to the final name, so a concurrent writer
 * either wins or `read`s the winner's file, and a crash leaves no file or a whole one.
 */
export function createOnce<T>(file: string, fresh: T, read: (file: string) => T): T {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeFileSync(fd, `${JSON.stringify(fresh, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return read(file);
  } finally {
    rmSync(tmp, { force: true });
  }
  return fresh;
}
