// Same-node routes over unix sockets: each service instance that knows its node's run root listens
// on <runRoot>/routes/<token>-<pid>-<start>-<n>.sock, and a service of the same node calling it sends the
// request there instead of through nats-server (two processes woken per call instead of three,
// twice instead of four times). The request and reply are the bytes and headers they would be
// over NATS, handed to the callee's one request path (local-route.ts has the rest of the story).
//
// Who may connect: the routes directory is 0700 and each socket 0600, owned by the services' user,
// so only processes of that user (or root) reach them, processes that can read the services'
// credentials anyway; both ends trust each other on that ground (a caller does not check which
// process listens, a callee believes the principal a connection names). The callee then takes
// from a connection only the subjects its principal's NATS user may publish (the allow list
// nats-server enforces for that user) and sends anything else back `elsewhere`, to NATS, which
// decides: least privilege against a service's bugs, as on NATS, not against a process of the
// services' own user.
//
// Wire: frames of [u32 length][u8 type][u32 id][u32 meta length][meta JSON object][payload].
// HELLO (meta {principal}) opens a connection; REQUEST (meta {subject, headers}) and REPLY (meta
// {} or {error: {code, description}} or {elsewhere: true}) follow, matched by id. `elsewhere`
// answers a request the callee did not take (stopping, or not its principal's to ask): the caller
// sends it over NATS instead. DRAIN (callee to caller) says the callee is stopping: the caller
// sends nothing more on that connection and ends its side once its requests are answered. BEAT
// (meta {from}) is a heartbeat of a request whose caller asked for them (heartbeat.ts).
import { lstatSync, mkdirSync, readdirSync, unlinkSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { ErrorCode, type MsgHdrs, NatsError, headers as natsHeaders } from 'nats';
import { HEARTBEAT_HEADER, HEARTBEAT_INTERVAL_MS } from './heartbeat.js';
import { oneLine } from './one-line.js';
import { pidAlive, processStart } from './pid-alive.js';
import type { LocalMsg, LocalReply } from './route-msg.js';

const HELLO = 1;
const REQUEST = 2;
const REPLY = 3;
const DRAIN = 4;
const BEAT = 5;
const HEAD = 13; // u32 length, u8 type, u32 id, u32 meta length
/** A frame larger than this ends the connection (a request or reply is at most max_payload). */
const MAX_FRAME = 64 * 1024 * 1024;
/** How long a stopped callee waits for a drained caller to end its side before closing. */
const DRAIN_GRACE_MS = 2_000;

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

/**
 * Splits a connection's bytes into frames; calls `bad` (and reads nothing more) on a malformed
 * one or when `onFrame` throws. Chunks are joined only once a whole frame has arrived.
 */
export function frameReader(
  onFrame: (f: Frame) => void,
  bad: (why: string) => void,
): (chunk: Buffer) => void {
  let chunks: Buffer[] = [];
  let have = 0;
  let broken = false;
  const fail = (why: string) => {
    broken = true;
    chunks = [];
    bad(why);
  };
  return (chunk) => {
    if (broken) return;
    chunks.push(chunk);
    have += chunk.length;
    while (have >= 4) {
      if ((chunks[0] as Buffer).length < 4) chunks = [Buffer.concat(chunks)];
      const len = (chunks[0] as Buffer).readUInt32BE(0);
      if (len < HEAD - 4 || len > MAX_FRAME) return fail(`a frame of ${len} bytes`);
      if (have < 4 + len) return;
      const buf = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      const type = buf.readUInt8(4);
      const id = buf.readUInt32BE(5);
      const metaLen = buf.readUInt32BE(9);
      if (HEAD + metaLen > 4 + len) return fail('a frame whose meta overruns it');
      let meta: unknown;
      try {
        meta = JSON.parse(buf.subarray(HEAD, HEAD + metaLen).toString('utf8'));
      } catch {
        return fail('a frame whose meta is not JSON');
      }
      if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) {
        return fail('a frame whose meta is not an object');
      }
      // A copy: the payload outlives this chunk (the handler decodes it later).
      const payload = Uint8Array.prototype.slice.call(buf, HEAD + metaLen, 4 + len);
      const rest = buf.subarray(4 + len);
      chunks = rest.length > 0 ? [rest] : [];
      have = rest.length;
      try {
        onFrame({ type, id, meta: meta as Record<string, unknown>, payload });
      } catch (err) {
        return fail(`a frame it could not take: ${(err as Error).message}`);
      }
    }
  };
}

/** Request headers from the wire; throws on a name or value NATS would refuse. */
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

/** Service-error headers as nats.js's respondError sets them (a description on one line). */
export function errorHeaders(code: unknown, description: unknown): MsgHdrs {
  const h = natsHeaders();
  h.set('Nats-Service-Error-Code', String(code));
  h.set('Nats-Service-Error', oneLine(String(description ?? '')));
  return h;
}

/**
 * The routes directory, made 0700 if missing; false (no socket routes) when it is not a
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
  /** Stops taking requests: the socket goes, callers are told to drain, new requests go `elsewhere`. */
  stopTaking(): void;
  /** Ends every connection (after the callee's in-flight requests are answered). */
  close(): void;
}

// <token>-<pid>-<start>-<n>.sock: the listening process by its pid and start (pid-alive.ts), so a
// socket left by a dead process is known as such even once its pid is reused.
const SOCKET_NAME = /^[a-z]+-(\d+)-(\d+)-\d+\.sock$/;

let ownStart: string | undefined;
/** This process's start, as its socket names hold it. */
const started = (): string => (ownStart ??= processStart(process.pid) ?? '0');

/** Whether the process that made socket `name` is still running (false for any other name). */
function listenerAlive(name: string): boolean {
  const m = SOCKET_NAME.exec(name);
  if (!m) return false;
  const pid = Number(m[1]);
  if (pid === process.pid) return m[2] === started();
  return processStart(pid) === m[2];
}

/** The names of sockets before they held their process's start (<token>-<pid>-<n>.sock). */
const LEGACY_NAME = /^[a-z]+-(\d+)-\d+\.sock$/;

/** Removes the sockets of instances whose process is gone (a crash leaves its socket behind). */
function sweepStale(dir: string): void {
  for (const name of readdirSync(dir)) {
    const legacy = LEGACY_NAME.exec(name);
    const stale = legacy ? !pidAlive(Number(legacy[1])) : SOCKET_NAME.test(name) && !listenerAlive(name);
    if (stale) {
      try {
        unlinkSync(join(dir, name));
      } catch {}
    }
  }
}

/** Instances of this process that listened so far: each gets a socket name of its own. */
let listened = 0;

/** Listens for same-node callers of one service instance; undefined when the directory is unsafe. */
export async function listenRoutes(opts: RouteServerOptions): Promise<RouteServer | undefined> {
  if (!routesDirOk(opts.dir)) {
    opts.warn(`same-node routes off: ${opts.dir} is not a 0700 directory of this user`);
    return undefined;
  }
  sweepStale(opts.dir);
  listened += 1;
  const path = join(opts.dir, `${opts.token}-${process.pid}-${started()}-${listened}.sock`);
  try {
    unlinkSync(path);
  } catch {}
  const conns = new Set<Socket>();
  let taking = true;
  const server: Server = createServer({ allowHalfOpen: true }, (sock) => {
    conns.add(sock);
    if (!taking) sock.write(frame(DRAIN, 0, {}));
    let permit: ((subject: string) => boolean) | undefined;
    let hello = false;
    const end = (why: string) => {
      opts.warn(`same-node route connection closed: ${why}`);
      sock.destroy();
    };
    const reply = (id: number, meta: unknown, data?: Uint8Array): boolean => {
      if (!sock.writable) return false;
      sock.write(frame(REPLY, id, meta, data));
      return true;
    };
    sock.on(
      'data',
      frameReader((f) => {
        if (f.type === HELLO && !hello) {
          hello = true;
          // A principal this build does not know is sent to NATS for each request (it decides).
          permit = typeof f.meta.principal === 'string' ? opts.permit(f.meta.principal) : undefined;
          return;
        }
        if (f.type !== REQUEST || !hello) {
          end(f.type === REQUEST ? 'a request before its HELLO' : `an unexpected frame of type ${f.type}`);
          return;
        }
        const subject = typeof f.meta.subject === 'string' ? f.meta.subject : '';
        const take = taking && permit?.(subject) ? opts.take(subject) : undefined;
        let headers: MsgHdrs | undefined;
        try {
          headers = take ? toHeaders(f.meta.headers) : undefined;
        } catch {
          headers = undefined;
        }
        if (!take || !headers) {
          reply(f.id, { elsewhere: true });
          return;
        }
        let answered = false;
        const once = (meta: unknown, data?: Uint8Array) => {
          if (answered) return false;
          answered = true;
          return reply(f.id, meta, data);
        };
        take({
          subject,
          data: f.payload,
          headers,
          reply: headers.get(HEARTBEAT_HEADER) ? `route.${f.id}` : undefined,
          via: 'socket',
          respond: (data, o) => {
            const beat = o?.headers?.get(HEARTBEAT_HEADER);
            if (!beat) return once({}, data);
            if (answered || !sock.writable) return false;
            sock.write(frame(BEAT, f.id, { from: beat }));
            return true;
          },
          respondError: (code, description, data) => once({ error: { code, description } }, data),
        });
      }, end),
    );
    // The caller ended its side (drained, or done): end ours once what is written has gone.
    sock.on('end', () => sock.end());
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
  server.on('error', (err) => opts.warn('same-node route socket failed', err));
  await chmod(path, 0o600);
  server.unref();
  return {
    path,
    stopTaking() {
      if (!taking) return;
      taking = false;
      // Not awaited: close() settles only once every connection has ended, and the callee's
      // in-flight requests still answer on theirs.
      server.close();
      try {
        unlinkSync(path);
      } catch {}
      for (const s of conns) if (s.writable) s.write(frame(DRAIN, 0, {}));
    },
    close() {
      // A drained caller ends its side when its requests are answered; one that has not by now
      // (stuck, or its DRAIN still in flight) is cut after a grace, its later requests having
      // been answered `elsewhere` meanwhile.
      for (const s of conns) {
        const t = setTimeout(() => s.destroy(), DRAIN_GRACE_MS);
        t.unref();
        s.once('close', () => clearTimeout(t));
      }
    },
  };
}

interface Pending {
  resolve(r: LocalReply | undefined): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  /** A watched request: its stall timer, restarted by each heartbeat. */
  stall?: { timer: NodeJS.Timeout; restart(from: string | undefined): void };
}

/** How a long request is watched: silence allowed, and the error of a callee gone silent. */
export interface RouteWatch {
  stallMs: number;
  lost(from: string | undefined, silentMs: number): Error;
}

/** One request for a same-node callee: the encoded request as NATS would carry it, and its bounds. */
export interface RouteCall {
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs;
  timeoutMs: number;
  watch?: RouteWatch | undefined;
}

/** One caller's connection to one callee socket, many requests at once. */
class RouteConn {
  private readonly sock: Socket;
  private readonly pending = new Map<number, Pending>();
  private next = 1;
  private connected = false;
  /** Takes no new request: closed, or the callee asked it to drain. */
  done = false;

  constructor(
    readonly path: string,
    principal: string,
    private readonly onClose: (conn: RouteConn, refused: boolean) => void,
  ) {
    this.sock = createConnection({ path, allowHalfOpen: true });
    this.sock.unref();
    this.sock.once('connect', () => {
      this.connected = true;
    });
    this.sock.write(frame(HELLO, 0, { principal }));
    this.sock.on(
      'data',
      frameReader(
        (f) => this.onFrame(f),
        () => this.sock.destroy(),
      ),
    );
    this.sock.on('error', () => undefined);
    // The callee ended its side: after our own end when drained, or because its process is gone.
    this.sock.on('end', () => this.sock.destroy());
    this.sock.on('close', () => {
      this.done = true;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        clearTimeout(p.timer);
        if (p.stall) clearTimeout(p.stall.timer);
        // Never connected: the callee never saw it, NATS may carry it. Else it may have run.
        if (!this.connected) p.resolve(undefined);
        else p.reject(new RouteLost(`the connection to ${this.path} closed before its reply`));
      }
      this.onClose(this, !this.connected);
    });
  }

  /** Sends one request; a promise of undefined when the callee did not take it (send it over NATS). */
  request({ subject, data, headers, timeoutMs, watch }: RouteCall): Promise<LocalReply | undefined> {
    if (this.done || this.sock.destroyed || !this.sock.writable) return Promise.resolve(undefined);
    const id = this.next;
    this.next = this.next >= 0xffffffff ? 1 : this.next + 1;
    return new Promise((resolve, reject) => {
      const give = (err: Error) => {
        const p = this.pending.get(id);
        if (!p) return;
        this.pending.delete(id);
        clearTimeout(p.timer);
        if (p.stall) clearTimeout(p.stall.timer);
        this.idle();
        reject(err);
      };
      // The caller gives up as a NATS request does; a reply after that is dropped.
      const timer = setTimeout(() => give(new NatsError(ErrorCode.Timeout, ErrorCode.Timeout)), timeoutMs);
      const pending: Pending = { resolve, reject, timer };
      if (watch) {
        if (!headers.get(HEARTBEAT_HEADER)) headers.set(HEARTBEAT_HEADER, String(HEARTBEAT_INTERVAL_MS));
        let from: string | undefined;
        const arm = () => setTimeout(() => give(watch.lost(from, watch.stallMs)), watch.stallMs);
        const stall = {
          timer: arm(),
          restart(f: string | undefined) {
            from = f ?? from;
            clearTimeout(stall.timer);
            stall.timer = arm();
          },
        };
        pending.stall = stall;
      }
      this.pending.set(id, pending);
      this.sock.ref();
      this.sock.write(frame(REQUEST, id, { subject, headers: fromHeaders(headers) }, data));
    });
  }

  private onFrame(f: Frame): void {
    if (f.type === DRAIN) {
      this.done = true;
      this.idle();
      return;
    }
    const p = this.pending.get(f.id);
    if (!p) return;
    if (f.type === BEAT) {
      p.stall?.restart(typeof f.meta.from === 'string' ? f.meta.from : undefined);
      return;
    }
    if (f.type !== REPLY) return;
    this.pending.delete(f.id);
    clearTimeout(p.timer);
    if (p.stall) clearTimeout(p.stall.timer);
    this.idle();
    if (f.meta.elsewhere === true) p.resolve(undefined);
    else if (f.meta.error && typeof f.meta.error === 'object') {
      const e = f.meta.error as { code?: unknown; description?: unknown };
      p.resolve({ data: f.payload, headers: errorHeaders(e.code, e.description) });
    } else p.resolve({ data: f.payload, headers: undefined });
  }

  /** With nothing in flight: lets the process exit, and ends a drained connection. */
  private idle(): void {
    if (this.pending.size > 0) return;
    this.sock.unref();
    if (this.done && !this.sock.destroyed) this.sock.end();
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
        // Sockets whose process is gone are left out: they would only refuse.
        this.listing = { at: now, names: readdirSync(this.dir).filter(listenerAlive) };
      } catch {
        this.listing = { at: now, names: [] };
      }
      for (const [name, until] of this.refused) if (until < now) this.refused.delete(name);
    }
    const prefix = `${r.token}-`;
    const candidates = this.listing.names.filter((n) => {
      if (!n.startsWith(prefix)) return false;
      const until = this.refused.get(n);
      return until === undefined || until < now;
    });
    if (candidates.length === 0) return undefined;
    this.turn = (this.turn + 1) % candidates.length;
    return candidates[this.turn];
  }

  /**
   * Sends a request to a same-node callee: undefined when none listens, a promise of undefined
   * when the one asked did not take it (send it over NATS).
   */
  request(call: RouteCall): Promise<LocalReply | undefined> | undefined {
    const name = this.pick(call.subject);
    if (!name) return undefined;
    let conn = this.conns.get(name);
    if (!conn || conn.done) {
      conn = new RouteConn(join(this.dir, name), this.principal, (c, refused) => {
        if (this.conns.get(name) === c) this.conns.delete(name);
        if (refused) {
          this.refused.set(name, Date.now() + REFUSED_FOR_MS);
          this.listing.at = 0;
        }
      });
      this.conns.set(name, conn);
    }
    return conn.request(call);
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
