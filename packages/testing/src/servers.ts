import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, stopProc, tcpOpen, waitReady } from './proc.js';

/** TLS files of a test server (see makeTestPki); clients must present a certificate when `verifyClients`. */
export interface ServerTls {
  cert: string;
  key: string;
  ca: string;
  verifyClients?: boolean;
}

/** The nats-server `tls {}` block for these files. */
export function natsTlsBlock(tls: ServerTls): string {
  // The handshake timeout (0.5 s by default) is raised: a loaded test machine misses it.
  return `tls { cert_file: ${JSON.stringify(tls.cert)}, key_file: ${JSON.stringify(tls.key)}, ca_file: ${JSON.stringify(tls.ca)}, verify: ${tls.verifyClients === true}, timeout: 10 }\n`;
}

/** redis-server flags serving TLS only, on `port`, with these files (replication over TLS too). */
export function redisTlsArgs(tls: ServerTls, port: number): string[] {
  return [
    '--port',
    '0',
    '--tls-port',
    String(port),
    '--tls-cert-file',
    tls.cert,
    '--tls-key-file',
    tls.key,
    '--tls-ca-cert-file',
    tls.ca,
    '--tls-auth-clients',
    tls.verifyClients === true ? 'yes' : 'no',
    '--tls-replication',
    'yes',
  ];
}

/** A server process started for a test; stop() kills it and removes its files. */
export interface TestServer {
  url: string;
  port: number;
  dir: string;
  proc: ChildProcess;
  /** Output the server wrote so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/** Makes a temporary directory for one test server. */
export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `berth-${prefix}-`));
}

/** Asks the kernel for a free loopback port. The caller must handle losing the race for it. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = srv.address();
  srv.close();
  if (!addr || typeof addr === 'string') throw new Error('could not get a free port');
  return addr.port;
}

/**
 * Starts nats-server with JetStream on a port the server picks itself (port -1), reading the port
 * back from its ports file. restart() stops and starts it again on the same port.
 */
export async function startNats(
  opts: {
    jetstream?: boolean;
    /**
     * Require authentication: a user and password, or a token. The server reads it from a config
     * file (not argv); `url` then carries it (`nats://user:pass@...` or `nats://TOKEN@...`).
     */
    auth?: { user: string; password: string } | { token: string };
    /**
     * More server configuration (nats-server config syntax), e.g. `operator` / `resolver` for
     * JWT authentication. Written to the config file with `auth`.
     */
    config?: string;
    /** Serve TLS (clients must then use it); `url` stays `nats://`, which nats.js upgrades. */
    tls?: ServerTls;
  } = {},
): Promise<TestServer & { restart(): Promise<void> }> {
  const dir = await tempDir('nats');
  const args = ['-a', '127.0.0.1', '-p', '-1', '--ports_file_dir', dir];
  if (opts.jetstream !== false) args.push('-js', '-sd', join(dir, 'js'));
  let userinfo = '';
  if (opts.auth || opts.config || opts.tls) {
    const a = opts.auth;
    const block = !a
      ? ''
      : 'token' in a
        ? `authorization { token: ${JSON.stringify(a.token)} }\n`
        : `authorization { user: ${JSON.stringify(a.user)}, password: ${JSON.stringify(a.password)} }\n`;
    const tls = opts.tls ? natsTlsBlock(opts.tls) : '';
    await writeFile(join(dir, 'auth.conf'), `${block}${tls}${opts.config ?? ''}\n`, { mode: 0o600 });
    args.unshift('-c', join(dir, 'auth.conf'));
  }
  if (opts.auth) {
    const a = opts.auth;
    userinfo =
      'token' in a
        ? `${encodeURIComponent(a.token)}@`
        : `${encodeURIComponent(a.user)}:${encodeURIComponent(a.password)}@`;
  }
  let { proc, output } = launch('nats-server', args, dir);
  let port = 0;
  await waitReady('nats-server', proc, output, async () => {
    const f = (await readdir(dir)).find((n) => n.endsWith('.ports'));
    if (!f) return false;
    const ports = JSON.parse(await readFile(join(dir, f), 'utf8')) as { nats: string[] };
    const first = ports.nats[0];
    if (!first) return false;
    port = Number(new URL(first).port);
    return tcpOpen(port);
  });
  const server = {
    url: `nats://${userinfo}127.0.0.1:${port}`,
    port,
    dir,
    proc,
    output: () => output(),
    async stop() {
      await stopProc(server.proc);
      await rm(dir, { recursive: true, force: true });
    },
    async restart() {
      await stopProc(server.proc);
      const fixed = args.map((a) => (a === '-1' ? String(port) : a));
      ({ proc, output } = launch('nats-server', fixed, dir));
      server.proc = proc;
      await waitReady('nats-server (restart)', proc, output, () => tcpOpen(port));
    },
  };
  return server;
}

/**
 * Starts redis-server (appendonly on) on a free loopback port. If another process takes the port
 * between picking and binding, redis exits with "Address already in use" and a new port is tried.
 */
export async function startRedis(
  opts: {
    appendonly?: boolean;
    /**
     * Require this password (`requirepass`, from a config file rather than argv); `url` then
     * carries it as `redis://:password@...`.
     */
    password?: string;
    /** More redis.conf lines (e.g. ACL `user` directives), written to the same 0600 config file. */
    config?: string;
    /** Serve TLS only (no plain port); `url` is then `rediss://`. */
    tls?: ServerTls;
  } = {},
): Promise<TestServer & { restart(): Promise<void> }> {
  const dir = await tempDir('redis');
  const conf: string[] = [];
  if (opts.password !== undefined || opts.config !== undefined) {
    // Redis reads the config file first; the flags after it override the rest.
    const pass = opts.password !== undefined ? `requirepass ${JSON.stringify(opts.password)}\n` : '';
    await writeFile(join(dir, 'auth.conf'), `${pass}${opts.config ?? ''}\n`, { mode: 0o600 });
    conf.push(join(dir, 'auth.conf'));
  }
  const userinfo = opts.password !== undefined ? `:${encodeURIComponent(opts.password)}@` : '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const args = [
      ...conf,
      ...(opts.tls ? redisTlsArgs(opts.tls, port) : ['--port', String(port)]),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      opts.appendonly === false ? 'no' : 'yes',
      '--save',
      '',
      '--protected-mode',
      'yes',
    ];
    let { proc, output } = launch('redis-server', args, dir);
    try {
      // Not the open port alone: when another process took the port first, it answers there
      // (e.g. a nats-server, whose INFO a Redis client reads as a protocol error) while this
      // redis-server is about to exit with "Address already in use".
      await waitReady(
        'redis-server',
        proc,
        output,
        async () => output().includes('Ready to accept connections') && (await tcpOpen(port)),
      );
    } catch (err) {
      if (output().includes('Address already in use')) continue;
      throw err;
    }
    const server = {
      url: `${opts.tls ? 'rediss' : 'redis'}://${userinfo}127.0.0.1:${port}`,
      port,
      dir,
      proc,
      output: () => output(),
      async stop() {
        await stopProc(server.proc);
        await rm(dir, { recursive: true, force: true });
      },
      async restart() {
        await stopProc(server.proc);
        ({ proc, output } = launch('redis-server', args, dir));
        server.proc = proc;
        await waitReady('redis-server (restart)', proc, output, () => tcpOpen(port));
      },
    };
    return server;
  }
  throw new Error('redis-server: could not bind a free port after 5 attempts');
}

/**
 * Starts Debian's docker-registry (the reference distribution registry) on a free loopback port,
 * storing under a temp dir. With `htpasswd` (a file content in bcrypt form) it requires basic auth.
 */
export async function startRegistry(
  opts: { htpasswd?: string } = {},
): Promise<TestServer & { host: string }> {
  const dir = await tempDir('registry');
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const marker = randomUUID();
    const auth = opts.htpasswd
      ? `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${join(dir, 'htpasswd')}\n`
      : '';
    if (opts.htpasswd) await writeFile(join(dir, 'htpasswd'), opts.htpasswd);
    const cfg = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
  headers:
    X-Berth-Registry: [${marker}]
${auth}`;
    await writeFile(join(dir, 'config.yml'), cfg);
    const { proc, output } = launch('docker-registry', ['serve', join(dir, 'config.yml')], dir);
    try {
      // Ready when this registry answers (its own marker header), not when the port is open:
      // another process that took the port first would answer there while this one exits.
      await waitReady('docker-registry', proc, output, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/v2/`);
        await res.body?.cancel();
        return res.headers.get('x-berth-registry') === marker;
      });
    } catch (err) {
      if (output().includes('address already in use')) continue;
      throw err;
    }
    return {
      url: `http://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      port,
      dir,
      proc,
      output,
      async stop() {
        await stopProc(proc);
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw new Error('docker-registry: could not bind a free port after 5 attempts');
}
