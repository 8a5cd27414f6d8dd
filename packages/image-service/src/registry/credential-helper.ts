import { spawn } from 'node:child_process';
import { BerthError, Code, type RegistryAuth } from '@berth/api';

/**
 * docker's credential helpers (docker-credential-helpers protocol): `docker-credential-NAME ACTION`
 * with the request on stdin and the answer on stdout. `get` takes the server and answers
 * `{"ServerURL","Username","Secret"}`, a Username of `<token>` meaning Secret is an identity token;
 * `store` takes that object; `erase` takes the server. A missing entry is reported on stdout as
 * "credentials not found".
 */
export type HelperAction = 'get' | 'store' | 'erase';

/** How long a helper may take: a keychain may ask the user, but a hung helper must not hang a pull. */
export const HELPER_TIMEOUT_MS = 30_000;

/** The message docker-credential-helpers print when they hold nothing for a server. */
const NOT_FOUND = /credentials not found/i;

/** A helper name as docker accepts it in config.json: a suffix, never a path. */
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The program of helper `name` (`docker-credential-NAME`, looked up in PATH); refuses a path. */
export function helperProgram(name: string): string {
  if (!HELPER_NAME.test(name)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `docker config: credential helper name ${JSON.stringify(name)} is not a plain name (docker-credential-NAME is looked up in PATH)`,
    );
  }
  return `docker-credential-${name}`;
}

/** Runs one helper action; resolves with its stdout, rejects with a BerthError naming the helper. */
function runHelper(program: string, action: HelperAction, input: string, server: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { stdio: ['pipe', 'pipe', 'pipe'], timeout: HELPER_TIMEOUT_MS });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    child.once('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? 'not found in PATH' : e.message;
      reject(new BerthError(Code.FAILED_PRECONDITION, `credential helper ${program} for ${server}: ${why}`));
    });
    child.once('close', (code, signal) => {
      if (code === 0) return resolve(out);
      if (NOT_FOUND.test(out) || NOT_FOUND.test(err)) return resolve('');
      const said = (out.trim() || err.trim()).split('\n')[0]?.slice(0, 200) ?? '';
      const how = signal ? `was killed by ${signal}` : `exited ${code}`;
      reject(
        new BerthError(
          Code.FAILED_PRECONDITION,
          `credential helper ${program} ${action} for ${server} ${how}${said ? `: ${said}` : ''}`,
        ),
      );
    });
  });
}

/**
 * Credentials for `server` from helper `name`: undefined when it holds none. `server` is what docker
 * passes: the config.json key (`https://index.docker.io/v1/` for Docker Hub, else the host).
 */
export async function helperGet(name: string, server: string): Promise<RegistryAuth | undefined> {
  const program = helperProgram(name);
  const out = await runHelper(program, 'get', server, server);
  if (out.trim() === '') return undefined;
  let reply: { Username?: unknown; Secret?: unknown };
  try {
    reply = JSON.parse(out) as typeof reply;
  } catch {
    throw new BerthError(
      Code.FAILED_PRECONDITION,
      `credential helper ${program} get for ${server}: answer is not JSON`,
    );
  }
  const username = typeof reply.Username === 'string' ? reply.Username : '';
  const secret = typeof reply.Secret === 'string' ? reply.Secret : '';
  if (!secret) return undefined;
  if (username === '<token>') return { identityToken: secret };
  return { username, password: secret };
}

/** Stores credentials for `server` with helper `name` (docker login with a credsStore). */
export async function helperStore(
  name: string,
  server: string,
  username: string,
  secret: string,
): Promise<void> {
  const body = JSON.stringify({ ServerURL: server, Username: username, Secret: secret });
  await runHelper(helperProgram(name), 'store', body, server);
}

/** Erases what helper `name` holds for `server` (docker logout); nothing held is not an error. */
export async function helperErase(name: string, server: string): Promise<void> {
  await runHelper(helperProgram(name), 'erase', server, server);
}
