import type { IncomingMessage } from 'node:http';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { BerthError, Code } from '@berth/api';
import { countRefused, rememberOrigin, StreamSession, startStreamingMetrics } from './observe.js';
import {
  parsePort,
  SPDY_PORT_FORWARD_PROTOCOLS,
  servePortForwardSpdy,
  servePortForwardWs,
  WS_PORT_FORWARD_PROTOCOLS,
} from './port-forward.js';
import { type CommandRequest, runCommand, SPDY_COMMAND_PROTOCOLS } from './remote-command.js';
import { type CachedRequest, RequestCache } from './request-cache.js';
import { acceptCommandStream, type StreamType, spdyCommandSession } from './spdy-command.js';
import { SpdySession } from './spdy-session.js';
import type { SpdyStream } from './spdy-stream.js';
import type {
  AttachRequest,
  ExecRequest,
  PortForwardRequest,
  StreamingServerOptions,
  StreamKind,
} from './types.js';
import { validateRequest } from './validate.js';
import { isWebSocketRequest, WebSocketConnection, webSocketHandshake } from './websocket.js';
import { WS_COMMAND_PROTOCOLS, wsCommandSession } from './ws-command.js';

/** The running streaming server: URLs for the CRI handlers, and shutdown. */
export interface StreamingServer {
  /** Caches the request and returns the one-shot URL the client connects to. Validates first. */
  url(kind: 'exec', request: ExecRequest): string;
  url(kind: 'attach', request: AttachRequest): string;
  url(kind: 'portforward', request: PortForwardRequest): string;
  /** Where the server listens, e.g. http://127.0.0.1:41234. */
  readonly baseUrl: string;
  /** Stops listening and drops every open session. */
  close(): Promise<void>;
}

const PATH = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]{1,64})$/;

/**
 * Starts berth's streaming server: the HTTP endpoint behind the CRI Exec, Attach and PortForward
 * URLs, speaking SPDY/3.1 and WebSocket (channel.k8s.io) as kubelet's streaming server does.
 */
export async function createStreamingServer(opts: StreamingServerOptions): Promise<StreamingServer> {
  const host = opts.host ?? '127.0.0.1';
  startStreamingMetrics();
  const cache = new RequestCache(opts.tokenTtlMs ?? 60_000, opts.maxInFlight ?? 1000, opts.now ?? Date.now);
  const timeouts = {
    creation: opts.streamCreationTimeoutMs ?? 30_000,
    idle: opts.idleTimeoutMs ?? 4 * 3600_000,
  };
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => plainRequest(req, res, cache));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      upgrade(req, socket, head, cache, opts, timeouts);
    } catch {
      socket.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address === 'string')
    throw new BerthError(Code.INTERNAL, 'streaming server has no TCP address');
  const urlHost = opts.advertiseHost ?? address.address;
  const baseUrl = `http://${urlHost.includes(':') ? `[${urlHost}]` : urlHost}:${address.port}`;
  return {
    baseUrl,
    url(kind: StreamKind, request: ExecRequest | AttachRequest | PortForwardRequest): string {
      const cached = validateRequest(kind, request);
      const url = `${baseUrl}/${kind}/${cache.insert(cached)}`;
      rememberOrigin(cached);
      return url;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** Answers a request that is not an upgrade: consumes the token (as kubelet does), then refuses. */
function plainRequest(req: IncomingMessage, res: ServerResponse, cache: RequestCache): void {
  const match = PATH.exec(new URL(req.url ?? '/', 'http://x').pathname);
  const found =
    match &&
    (req.method === 'GET' || req.method === 'POST') &&
    cache.consume(match[1] as StreamKind, match[2] ?? '');
  if (!found) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
    return;
  }
  res
    .writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8' })
    .end('unable to upgrade: the streaming server speaks only SPDY/3.1 and WebSocket upgrades\n');
}

function refuse(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  const reason =
    { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 426: 'Upgrade Required' }[status] ?? 'Error';
  const body = `${message}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${reason}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

/** Comma-separated header values as one list (Node joins repeated headers with ", "). */
function headerList(value: string | string[] | undefined): string[] {
  const joined = Array.isArray(value) ? value.join(',') : (value ?? '');
  return joined
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}

function upgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  cache: RequestCache,
  opts: StreamingServerOptions,
  timeouts: { creation: number; idle: number },
): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const match = PATH.exec(url.pathname);
  const cached =
    match && (req.method === 'GET' || req.method === 'POST')
      ? cache.consume(match[1] as StreamKind, match[2] ?? '')
      : undefined;
  if (!cached) {
    countRefused(undefined);
    refuse(socket, 404, '404 page not found');
    return;
  }
  if (isWebSocketRequest(req)) {
    upgradeWebSocket(req, socket, head, cached, url, opts, timeouts);
    return;
  }

  // SPDY: negotiate X-Stream-Protocol-Version first, as kubelet's httpstream.Handshake does.
  const served = cached.kind === 'portforward' ? SPDY_PORT_FORWARD_PROTOCOLS : SPDY_COMMAND_PROTOCOLS;
  const offered = headerList(req.headers['x-stream-protocol-version']);
  if (offered.length === 0) {
    countRefused(cached.kind);
    refuse(socket, 400, 'unable to upgrade: X-Stream-Protocol-Version is required');
    return;
  }
  const protocol = offered.find((p) => served.includes(p));
  if (!protocol) {
    countRefused(cached.kind);
    refuse(
      socket,
      403,
      `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(', ')}], server accepts [${served.join(', ')}]`,
      { 'X-Accepted-Stream-Protocol-Versions': served.join(', ') },
    );
    return;
  }
  const upgradeTo = (req.headers.upgrade ?? '').toLowerCase();
  if (!upgradeTo.includes('spdy/3.1')) {
    countRefused(cached.kind);
    refuse(
      socket,
      400,
      `unable to upgrade: Upgrade must be SPDY/3.1 or websocket, not "${req.headers.upgrade ?? ''}"`,
    );
    return;
  }
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n' +
      `X-Stream-Protocol-Version: ${protocol}\r\n\r\n`,
  );
  const backend = new StreamSession(cached, socket, { transport: 'spdy', protocol, head }).backend(
    opts.backend,
  );
  if (cached.kind === 'portforward') {
    let acceptor: (s: SpdyStream) => string | undefined = () => 'not ready';
    const session = new SpdySession(socket, (s) => acceptor(s), timeouts.idle);
    acceptor = servePortForwardSpdy(session, backend, cached.request.podSandboxId, timeouts.creation);
    session.feed(head);
    return;
  }
  const streams = new Map<StreamType, SpdyStream>();
  const session = new SpdySession(socket, acceptCommandStream(streams), timeouts.idle);
  const command = cached as CommandRequest;
  spdyCommandSession(session, protocol, command.request, timeouts.creation, streams).then(
    (commandSession) => runCommand(backend, command, commandSession),
    () => session.goAway(),
  );
  session.feed(head);
}

function upgradeWebSocket(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  cached: CachedRequest,
  url: URL,
  opts: StreamingServerOptions,
  timeouts: { creation: number; idle: number },
): void {
  let ports: number[] = [];
  if (cached.kind === 'portforward') {
    ports = cached.request.ports;
    if (ports.length === 0) {
      const fromQuery = url.searchParams.getAll('ports').flatMap((p) => p.split(','));
      const parsed = fromQuery.map((p) => parsePort(p));
      if (parsed.length === 0 || parsed.some((p) => p === undefined)) {
        countRefused(cached.kind);
        refuse(socket, 400, 'query parameter "ports" must list ports in 1..65535');
        return;
      }
      ports = parsed as number[];
    }
  }
  const served = cached.kind === 'portforward' ? WS_PORT_FORWARD_PROTOCOLS : WS_COMMAND_PROTOCOLS;
  const handshake = webSocketHandshake(req, served);
  if (!handshake.ok) {
    countRefused(cached.kind);
    refuse(socket, handshake.status, handshake.message, handshake.headers);
    return;
  }
  socket.write(handshake.response);
  const observed = new StreamSession(cached, socket, {
    transport: 'websocket',
    protocol: handshake.protocol,
    head,
  });
  const backend = observed.backend(opts.backend);
  const ws = new WebSocketConnection(socket, timeouts.idle);
  if (cached.kind === 'portforward') {
    void servePortForwardWs(ws, handshake.protocol, backend, cached.request.podSandboxId, ports);
  } else {
    void runCommand(backend, cached, wsCommandSession(ws, handshake.protocol, cached.request));
  }
  ws.feed(head);
}
