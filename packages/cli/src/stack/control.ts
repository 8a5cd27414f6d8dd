import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { BerthError, Code } from '@berth/api/errors';
import type { SupervisorState } from '../context.js';
import type { ServedLine, ServedRequest } from '../served-protocol.js';

/**
 * The supervisor's control protocol: one JSON object per line on a unix socket (mode 0600).
 * A request is `{"op":"status"}` or `{"op":"down"}`; `status` gets one reply line, `down` gets
 * one `progress` line per stopped process and a final `done` line, then the supervisor exits.
 */
export type ControlRequest = { op: 'status' } | { op: 'down' } | ControlRunRequest;

/**
 * A command the `berth` launcher asks the supervisor to run (src/served.ts): answered by
 * ServedLine lines, then the connection is closed. `bundleMtimeMs` is the modification time of the
 * served bundle the launcher would run itself: the supervisor serves only from the same build.
 */
export type ControlRunRequest = { op: 'run'; bundleMtimeMs: number } & ServedRequest;

/** One line the supervisor sends back. */
export type ControlReply =
  | { type: 'status'; state: SupervisorState }
  | { type: 'progress'; name: string; replica: number; pid: number | null; result: string }
  | { type: 'done' }
  | { type: 'error'; message: string }
  | ServedLine;

/** What the control server asks of the supervisor. */
export interface ControlHandler {
  status(): SupervisorState;
  down(progress: (reply: ControlReply) => void): Promise<void>;
  /** Runs a served command, or refuses it (then the launcher runs it). */
  run?(req: ControlRunRequest, send: (line: ServedLine) => void): Promise<void>;
}

function send(sock: Socket, reply: ControlReply): void {
  if (!sock.destroyed) sock.write(`${JSON.stringify(reply)}\n`);
}

/**
 * Listens on the control socket. The socket is created under a 0077 umask and chmod 0600, so only
 * its owner (root) can stop the stack.
 */
export async function listenControl(path: string, handler: ControlHandler): Promise<Server> {
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) sock.destroy();
      let nl = buf.indexOf('\n');
      while (nl >= 0 && !sock.destroyed) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void answer(sock, line, handler);
        nl = buf.indexOf('\n');
      }
    });
  });
  const old = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o600);
  return server;
}

async function answer(sock: Socket, line: string, handler: ControlHandler): Promise<void> {
  let req: ControlRequest;
  try {
    req = JSON.parse(line) as ControlRequest;
  } catch {
    send(sock, { type: 'error', message: 'control request is not valid JSON' });
    return;
  }
  try {
    if (req.op === 'status') {
      send(sock, { type: 'status', state: handler.status() });
    } else if (req.op === 'run') {
      if (handler.run && isRunRequest(req)) await handler.run(req, (line) => send(sock, line));
      else send(sock, { type: 'refused', reason: handler.run ? 'malformed run request' : 'not served' });
      sock.end();
    } else if (req.op === 'down') {
      await handler.down((r) => send(sock, r));
      send(sock, { type: 'done' });
      sock.end();
    } else {
      send(sock, { type: 'error', message: `unknown control op "${(req as { op: unknown }).op}"` });
    }
  } catch (err) {
    send(sock, { type: 'error', message: (err as Error).message });
  }
}

/** A run request as JSON.parse gave it: arguments and environment of strings, a bundle time. */
function isRunRequest(req: ControlRunRequest): boolean {
  return (
    Array.isArray(req.argv) &&
    req.argv.every((a) => typeof a === 'string') &&
    typeof req.env === 'object' &&
    req.env !== null &&
    Object.values(req.env).every((v) => typeof v === 'string') &&
    typeof req.bundleMtimeMs === 'number'
  );
}

/**
 * Sends one request to a running supervisor and collects its reply lines until it closes the
 * connection (down) or answers once (status). `onLine` sees each line as it arrives.
 * Throws UNAVAILABLE when nothing listens on the socket.
 */
export async function controlRequest(
  path: string,
  req: ControlRequest,
  opts: { timeoutMs: number; onLine?: (r: ControlReply) => void },
): Promise<ControlReply[]> {
  if (!existsSync(path)) throw new BerthError(Code.UNAVAILABLE, `no supervisor socket at ${path}`);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const replies: ControlReply[] = [];
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(
        new BerthError(
          Code.DEADLINE_EXCEEDED,
          `supervisor did not answer "${req.op}" within ${opts.timeoutMs} ms`,
        ),
      );
    }, opts.timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const reply = JSON.parse(buf.slice(0, nl)) as ControlReply;
        buf = buf.slice(nl + 1);
        replies.push(reply);
        opts.onLine?.(reply);
        if (reply.type === 'status' || reply.type === 'error') sock.end();
        nl = buf.indexOf('\n');
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new BerthError(
          Code.UNAVAILABLE,
          `supervisor socket ${path} does not answer (${err.code ?? err.message})`,
          {
            cause: err,
          },
        ),
      );
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(replies);
    });
  });
}

/** Removes a socket file left by a supervisor that died; ignores one that is already gone. */
export function removeStaleSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
