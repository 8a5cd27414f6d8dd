import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { BerthError, Code } from '@berth/api/errors';
import type { SupervisorState } from '../context.js';
import {
  encodeFrame,
  SERVED_SIGNALS,
  type ServedClient,
  type ServedLine,
  type ServedRequest,
} from '../served-protocol.js';

/**
 * The supervisor's control protocol: one JSON object per line on a unix socket (mode 0600).
 * A request is `{"op":"status"}` or `{"op":"down"}`; `status` gets one reply line, `down` gets
 * one `progress` line per stopped process and a final `done` line, then the supervisor exits.
 */
export type ControlRequest = { op: 'status' } | { op: 'down' } | ControlRunRequest;

/**
 * A command the `berth` command asks the supervisor to run (src/served.ts): answered in frames
 * (served-protocol.ts), then the connection is closed; `signal` lines sent meanwhile go to the
 * command. `bundleMtimeNs` is the modification time (ns, decimal) of the served bundle beside the
 * client: the supervisor serves only from the same build.
 */
export type ControlRunRequest = { op: 'run'; bundleMtimeNs: string } & ServedRequest;

/** One line the supervisor sends back. */
export type ControlReply =
  | { type: 'status'; state: SupervisorState }
  | { type: 'progress'; name: string; replica: number; pid: number | null; result: string }
  | { type: 'done' }
  | { type: 'error'; message: string };

/** What the control server asks of the supervisor. */
export interface ControlHandler {
  status(): SupervisorState;
  down(progress: (reply: ControlReply) => void): Promise<void>;
  /** Runs a served command, or refuses it (then the client runs it). */
  run?(req: ControlRunRequest, send: (line: ServedLine) => boolean, client: ServedClient): Promise<void>;
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
    // Where the lines go that the client of the served command this connection runs sends later.
    let after: ((line: string) => void) | undefined;
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      // A request carries a command line and its environment: a megabyte is more than any needs.
      if (buf.length > 1024 * 1024) sock.destroy();
      let nl = buf.indexOf('\n');
      while (nl >= 0 && !sock.destroyed) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (after) {
          after(line);
        } else {
          const req = parseRequest(line);
          if (req?.op === 'run') {
            const client = servedClient(sock);
            after = client.line;
            void answerRun(sock, req, handler, client);
          } else void answer(sock, req, handler);
        }
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

async function answer(sock: Socket, parsed: unknown, handler: ControlHandler): Promise<void> {
  if (parsed === undefined) {
    send(sock, { type: 'error', message: 'control request is not valid JSON' });
    return;
  }
  const req = parsed as ControlRequest;
  try {
    if (req.op === 'status') {
      send(sock, { type: 'status', state: handler.status() });
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

/** The client of a served command on `sock`, and where its later lines go (`go`, signals). */
function servedClient(sock: Socket): ServedClient & { line: (line: string) => void } {
  const listeners = new Set<(sig: NodeJS.Signals) => void>();
  let confirm: (yes: boolean) => void = () => undefined;
  const confirmed = new Promise<boolean>((resolve) => {
    confirm = resolve;
  });
  const gone = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  void gone.then(() => confirm(false));
  // The client forwards its signals only while the command takes them (served-protocol.ts).
  const taken = (yes: boolean) => {
    if (!sock.destroyed) sock.write(encodeFrame({ type: 'signals', taken: yes }));
  };
  return {
    confirmed,
    gone,
    onSignal: (fn) => {
      const entry = (sig: NodeJS.Signals) => fn(sig);
      listeners.add(entry);
      if (listeners.size === 1) taken(true);
      return () => {
        if (listeners.delete(entry) && listeners.size === 0) taken(false);
      };
    },
    drained: () =>
      sock.destroyed || !sock.writableNeedDrain
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const done = () => {
              sock.off('drain', done);
              sock.off('close', done);
              resolve();
            };
            sock.on('drain', done);
            sock.on('close', done);
          }),
    line: (line) => {
      let msg: { op?: unknown; signal?: unknown } | null;
      try {
        msg = JSON.parse(line) as { op?: unknown; signal?: unknown } | null;
      } catch {
        return;
      }
      if (msg?.op === 'go') confirm(true);
      else if (msg?.op === 'signal' && SERVED_SIGNALS.includes(msg.signal as NodeJS.Signals))
        for (const fn of listeners) fn(msg.signal as NodeJS.Signals);
    },
  };
}

/** A served command's request: answered in frames, then the connection is closed. */
async function answerRun(
  sock: Socket,
  req: unknown,
  handler: ControlHandler,
  client: ServedClient,
): Promise<void> {
  // False when the client is behind (the caller waits for client.drained()); true once it is gone.
  const frame = (l: ServedLine) => (sock.destroyed ? true : sock.write(encodeFrame(l)));
  try {
    if (handler.run && isRunRequest(req)) await handler.run(req, frame, client);
    else frame({ type: 'refused', reason: handler.run ? 'malformed run request' : 'not served' });
  } catch (err) {
    // Nothing was sent yet when the supervisor failed to take it: the client runs it itself.
    frame({ type: 'refused', reason: (err as Error).message });
  }
  sock.end();
}

/** A request line as JSON.parse reads it; undefined when it is not JSON. */
function parseRequest(line: string): { op?: unknown } | null | undefined {
  try {
    return JSON.parse(line) as { op?: unknown } | null;
  } catch {
    return undefined;
  }
}

/** A run request as JSON.parse gave it: arguments and environment of strings, a directory, a time. */
function isRunRequest(req: unknown): req is ControlRunRequest {
  const r = req as Partial<ControlRunRequest> | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    r.op === 'run' &&
    Array.isArray(r.argv) &&
    r.argv.every((a) => typeof a === 'string') &&
    typeof r.env === 'object' &&
    r.env !== null &&
    Object.values(r.env).every((v) => typeof v === 'string') &&
    typeof r.cwd === 'string' &&
    r.cwd.startsWith('/') &&
    typeof r.bundleMtimeNs === 'string' &&
    /^[0-9]{1,30}$/.test(r.bundleMtimeNs)
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
