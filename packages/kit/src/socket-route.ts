// Same-node routes over unix sockets: each service instance that knows its node's run root listens
// on <runRoot>/routes/<token>-<pid>.sock, and a service of the same node calling it sends the
// request there instead of through nats-server (two processes woken per call instead of three,
// twice instead of four times). The request and reply are the bytes and headers they would be
// over NATS, handed to the callee's one request path (local-route.ts has the rest of the story).
//
// Who may connect: the routes directory is 0700 and each socket 0600, owned by the service's user,
// so only processes of that user (or root) reach them: processes that could read the services'
// credentials anyway. A connection names its principal first; the callee then takes only the
// subjects that principal's NATS user may publish (the same allow list nats-server enforces), so
// a service's least privilege holds on this path as on NATS.
//
// Wire: frames of [u32 length][u8 type][u32 id][u32 meta length][meta JSON][payload]. HELLO
// (meta {principal}) opens a connection; REQUEST (meta {subject, headers}) and REPLY (meta {} or
// {error: {code, description}} or {elsewhere: true}) follow, matched by id. `elsewhere` answers a
// request the callee did not take (it is stopping): the caller sends it over NATS instead.
import { lstatSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { type MsgHdrs, headers as natsHeaders } from 'nats';
import type { LocalMsg, LocalReply } from './route-msg.js';

const HELLO = 1;
const REQUEST = 2;
const REPLY = 3;
const HEAD = 13; // u32 length, u8 type, u32 id, u32 meta length
/** A frame larger than this ends the connection: nothing berth sends over NATS comes near it. */
const MAX_FRAME = 64 * 1024 * 1024;

/** A request sent to a same-node callee whose connection was lost before its reply (it may have run). */
export class RouteLost extends Error {}

/** The subject token of a service's socket name and the node it is for (undefined: cluster-wide). */
export function routeOf(subject: string): { token: string; node: string | undefined } | undefined {
  const t = subject.split('.');
  if (t[0] !== 'berth') return undefined;
  if (t[2] === 'v1' && t.length >= 4) return { token: t[1] as string, node: undefined };
  if (t[3] === 'v1' && t.length >= 5) return { token: t[2] as string, node: t[1] };
  return undefined;
}

function frame(type: number, id: number, meta: unknown, payload?: Uint8Array): Buffer {
  const m = Buffer.from(JSON.stringify(meta));
  const p = payload ?? new Uint8Array(0);
  const head = Buffer.allocUnsafe(HEAD);
  head.writeUInt32BE(HEAD - 4 + m.length + p.length, 0);
  head.writeUInt8(type, 4);
  head.writeUInt32BE(id, 5);
  head.writeUInt32BE(m.length, 9);
  return Buffer.concat([head, m, p]);
}

interface Frame {
  type: number;
  id: number;
  meta: Record<string, unknown>;
  payload: Uint8Array;
}

/** Splits a connection's bytes into frames; calls `bad` (and stops) on a malformed one. */
function reader(onFrame: (f: Frame) => void, bad: (why: string) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  let broken = false;
  return (chunk) => {
    if (broken) return;
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (len < HEAD - 4 || len > MAX_FRAME) {
        broken = true;
        bad(`a frame of ${len} bytes`);
        return;
      }
      if (buf.length < 4 + len) return;
      const type = buf.readUInt8(4);
      const id = buf.readUInt32BE(5);
      const metaLen = buf.readUInt32BE(9);
      if (HEAD + metaLen > 4 + len) {
        broken = true;
        bad('a frame whose meta overruns it');
        return;
      }
      let meta: Record<string, unknown>;
      try {
        meta = JSON.parse(buf.subarray(HEAD, HEAD + metaLen).toString('utf8')) as Record<string, unknown>;
      } catch {
        broken = true;
        bad('a frame whose meta is not JSON');
        return;
      }
      // A copy: the payload outlives this chunk (the handler decodes it later).
      const payload = Uint8Array.prototype.slice.call(buf, HEAD + metaLen, 4 + len);
      buf = buf.subarray(4 + len);
      onFrame({ type, id, meta, payload });
    }
  };
}

function toHeaders(list: unknown): MsgHdrs {
  const h = natsHeaders();
  if (Array.isArray(list)) {
    for (const kv of list) {
      if (Array.isArray(kv) && typeof kv[0] === 'string' && typeof kv[1] === 'string') h.append(kv[0], kv[1]);
    }
  }
  return h;
}

function fromHeaders(h: MsgHdrs | undefined): [string, string][] {
  if (!h) return [];
  const out: [string, string][] = [];
  for (const k of h.keys()) for (const v of h.values(k)) out.push([k, v]);
  return out;
}

/**
 * The routes directory, made 0700 if missing; undefined (no socket routes) when it is not a
 * directory of this process's user that only that user can enter.
 */
export function routesDirOk(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = lstatSync(dir);
    const uid = process.getuid?.() ?? -1;
    return st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

/** What a callee's route server needs. */
export interface RouteServerOptions {
  dir: string;
  /** The subject token of the service (the socket's name). */
  token: string;
  /** The callee's request path for a subject it serves, undefined for one it does not (any more). */
  take(subject: string): ((msg: LocalMsg) => void) | undefined;
  /** Which subjects a principal may publish; undefined for a name that is no principal. */
  permit(principal: string): ((subject: string) => boolean) | undefined;
  warn(msg: string, err?: unknown): void;
}

/** A callee's listening socket. */
export interface RouteServer {
  readonly path: string;
  /** Stops taking requests: the socket goes, new requests are answered `elsewhere`. */
  stopTaking(): void;
  /** Ends every connection (after the callee's in-flight requests are answered). */
  close(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the sockets of instances whose process is gone (a crash leaves its socket behind). */
function sweepStale(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /^[a-z]+-(\d+)\.sock$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      try {
        unlinkSync(join(dir, name));
      } catch {}
    }
  }
}

/** Listens for same-node callers of one service instance; undefined when the directory is unsafe. */
export async function listenRoutes(opts: RouteServerOptions): Promise<RouteServer | undefined> {
  if (!routesDirOk(opts.dir)) {
    opts.warn(`same-node routes off: ${opts.dir} is not a 0700 directory of this user`);
    return undefined;
  }
  sweepStale(opts.dir);
  const path = join(opts.dir, `${opts.token}-${process.pid}.sock`);
  try {
    unlinkSync(path);
  } catch {}
  const conns = new Set<Socket>();
  let taking = true;
  const server: Server = createServer((sock) => {
    conns.add(sock);
    sock.setNoDelay?.(true);
    let permit: ((subject: string) => boolean) | undefined;
    const end = (why: string) => {
      opts.warn(`same-node route connection closed: ${why}`);
      sock.destroy();
    };
    sock.on(
      'data',
      reader((f) => {
        if (f.type === HELLO) {
          permit = typeof f.meta.principal === 'string' ? opts.permit(f.meta.principal) : undefined;
          if (!permit) end(`unknown principal ${JSON.stringify(f.meta.principal)}`);
          return;
        }
        if (f.type !== REQUEST || !permit) {
          end(f.type === REQUEST ? 'a request before its HELLO' : `a frame of type ${f.type}`);
          return;
        }
        const subject = typeof f.meta.subject === 'string' ? f.meta.subject : '';
        const reply = (meta: unknown, data?: Uint8Array): boolean => {
          if (sock.destroyed) return false;
          sock.write(frame(REPLY, f.id, meta, data));
          return true;
        };
        if (!permit(subject)) {
          // nats-server would refuse this publish; the caller checks its own list first, so only
          // a caller that lies about its principal gets here.
          end(`a request on ${subject}, which its principal may not publish`);
          return;
        }
        const take = taking ? opts.take(subject) : undefined;
        if (!take) {
          reply({ elsewhere: true });
          return;
        }
        let answered = false;
        const once = (meta: unknown, data?: Uint8Array) => {
          if (answered) return false;
          answered = true;
          return reply(meta, data);
        };
        take({
          subject,
          data: f.payload,
          headers: toHeaders(f.meta.headers),
          reply: undefined,
          via: 'socket',
          respond: (data) => once({}, data),
          respondError: (code, description, data) => once({ error: { code, description } }, data),
        });
      }, end),
    );
    sock.on('error', () => undefined);
    sock.on('close', () => conns.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, 0o600);
  server.unref();
  return {
    path,
    stopTaking() {
      taking = false;
      // Not awaited: close() settles only once every connection has ended, and the callee's
      // in-flight requests still answer on theirs (close() below ends them after).
      server.close();
      try {
        unlinkSync(path);
      } catch {}
    },
    close() {
      for (const s of conns) s.end();
    },
  };
}

interface Pending {
  resolve(r: LocalReply | undefined): void;
  reject(err: Error): void;
  /** Written to the socket: if the connection is lost now, the callee may have taken it. */
  sent: boolean;
}

/** One caller's connection to one callee socket, many requests at once. */
class RouteConn {
  private readonly sock: Socket;
  private readonly pending = new Map<number, Pending>();
  private next = 1;
  closed = false;

  constructor(
    readonly path: string,
    principal: string,
    private readonly onClose: (conn: RouteConn, refused: boolean) => void,
  ) {
    this.sock = createConnection(path);
    this.sock.setNoDelay?.(true);
    this.sock.unref();
    let connected = false;
    this.sock.once('connect', () => {
      connected = true;
      for (const p of this.pending.values()) p.sent = true;
    });
    this.sock.write(frame(HELLO, 0, { principal }));
    this.sock.on(
      'data',
      reader(
        (f) => this.onReply(f),
        () => this.sock.destroy(),
      ),
    );
    this.sock.on('error', () => undefined);
    this.sock.on('close', () => {
      this.closed = true;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        // Never connected: the callee never saw it, NATS may carry it. Else it may have run.
        if (!connected || !p.sent) p.resolve(undefined);
        else p.reject(new RouteLost(`the connection to ${this.path} closed before its reply`));
      }
      this.onClose(this, !connected);
    });
  }

  request(subject: string, data: Uint8Array, headers: MsgHdrs): Promise<LocalReply | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const id = this.next;
    this.next = this.next >= 0xffffffff ? 1 : this.next + 1;
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, sent: !this.sock.connecting };
      this.pending.set(id, pending);
      this.sock.ref();
      this.sock.write(frame(REQUEST, id, { subject, headers: fromHeaders(headers) }, data));
    });
  }

  private onReply(f: Frame): void {
    const p = this.pending.get(f.id);
    if (f.type !== REPLY || !p) return;
    this.pending.delete(f.id);
    if (this.pending.size === 0) this.sock.unref();
    if (f.meta.elsewhere === true) {
      p.resolve(undefined);
      return;
    }
    const error = f.meta.error as { code?: unknown; description?: unknown } | undefined;
    if (error) {
      const h = natsHeaders();
      h.set('Nats-Service-Error-Code', String(error.code));
      h.set('Nats-Service-Error', String(error.description ?? ''));
      p.resolve({ data: f.payload, headers: h });
      return;
    }
    p.resolve({ data: f.payload, headers: undefined });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** How long a socket that refused a connection is left alone (its process is gone). */
const REFUSED_FOR_MS = 5_000;
/** How long a directory listing is trusted before a call looks again. */
const LISTING_MS = 1_000;

/** A caller's same-node routes: one connection per callee socket, made on first use. */
export class RouteClient {
  private readonly conns = new Map<string, RouteConn>();
  private readonly refused = new Map<string, number>();
  private listing: { at: number; names: string[] } = { at: 0, names: [] };
  private turn = 0;

  constructor(
    private readonly dir: string,
    private readonly principal: string,
    private readonly node: string,
  ) {}

  /** The socket of a same-node instance serving `subject`, if one is listening. */
  private pick(subject: string): string | undefined {
    const r = routeOf(subject);
    if (!r || (r.node !== undefined && r.node !== this.node)) return undefined;
    const now = Date.now();
    if (now - this.listing.at > LISTING_MS) {
      try {
        this.listing = { at: now, names: readdirSync(this.dir) };
      } catch {
        this.listing = { at: now, names: [] };
      }
    }
    const prefix = `${r.token}-`;
    const candidates = this.listing.names.filter((n) => {
      if (!n.startsWith(prefix) || !n.endsWith('.sock')) return false;
      const until = this.refused.get(n);
      return until === undefined || until < now;
    });
    if (candidates.length === 0) return undefined;
    this.turn = (this.turn + 1) % candidates.length;
    return candidates[this.turn];
  }

  /** Sends a request to a same-node callee; undefined: none took it, send it over NATS. */
  request(subject: string, data: Uint8Array, headers: MsgHdrs): Promise<LocalReply | undefined> | undefined {
    const name = this.pick(subject);
    if (!name) return undefined;
    let conn = this.conns.get(name);
    if (!conn || conn.closed) {
      conn = new RouteConn(join(this.dir, name), this.principal, (c, refused) => {
        if (this.conns.get(name) === c) this.conns.delete(name);
        if (refused) {
          this.refused.set(name, Date.now() + REFUSED_FOR_MS);
          this.listing.at = 0;
        }
      });
      this.conns.set(name, conn);
    }
    return conn.request(subject, data, headers);
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
