// A registry front for tests: forwards to a real registry, counts requests, can require bearer
// tokens from its own token endpoint, and lets a test intercept requests to lie or stall.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface BearerOptions {
  /** user -> password accepted by the token endpoint. */
  users: Record<string, string>;
  /** Anonymous users may get pull tokens. */
  anonymousPull?: boolean;
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
}

export interface ProxyOptions {
  upstream: string;
  bearer?: BearerOptions;
  /** Return true when the request was answered by the hook. */
  intercept?: (req: IncomingMessage, res: ServerResponse, path: string) => boolean | Promise<boolean>;
}

export interface RegistryProxy {
  url: string;
  host: string;
  /** `METHOD path` -> count (paths without query). */
  counts: Map<string, number>;
  tokenRequests: number;
  count(method: string, pathPart: string): number;
  stop(): Promise<void>;
}

/** Starts a proxy on a free loopback port. */
export async function startProxy(opts: ProxyOptions): Promise<RegistryProxy> {
  const up = new URL(opts.upstream);
  const tokens = new Map<string, { scopes: string[]; expires: number }>();
  const sockets = new Set<Socket>();
  const proxy: RegistryProxy = {
    url: '',
    host: '',
    counts: new Map(),
    tokenRequests: 0,
    count(method, part) {
      let n = 0;
      for (const [k, v] of this.counts) if (k.startsWith(`${method} `) && k.includes(part)) n += v;
      return n;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };

  const server = createServer((req, res) => {
    void handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err.message));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://x');
    const key = `${req.method} ${u.pathname}`;
    proxy.counts.set(key, (proxy.counts.get(key) ?? 0) + 1);
    if (u.pathname === '/token' && opts.bearer) return token(req, res, u);
    if (opts.bearer && u.pathname.startsWith('/v2/')) {
      const m = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(u.pathname);
      const repo = m?.[1] ?? '';
      const actions = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'pull,push';
      const scope = `repository:${repo}:${actions}`;
      const auth = req.headers.authorization ?? '';
      const tok = auth.startsWith('Bearer ') ? tokens.get(auth.slice(7)) : undefined;
      const ok =
        tok && tok.expires > Date.now() && (repo === '' || tok.scopes.some((s) => covers(s, repo, actions)));
      if (!ok) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="${proxy.url}/token",service="berth-test",scope="${scope}"`,
          'content-type': 'application/json',
        });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
        return;
      }
    }
    if (opts.intercept && (await opts.intercept(req, res, u.pathname))) return;
    forward(req, res);
  }

  function covers(scope: string, repo: string, actions: string): boolean {
    const [type, name, acts] = scope.split(':');
    if (type !== 'repository' || name !== repo) return false;
    const have = (acts ?? '').split(',');
    return actions.split(',').every((a) => have.includes(a));
  }

  async function token(req: IncomingMessage, res: ServerResponse, u: URL): Promise<void> {
    proxy.tokenRequests++;
    const b = opts.bearer as BearerOptions;
    let user: string | undefined;
    let pass: string | undefined;
    let scopes = u.searchParams.getAll('scope');
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      if (form.get('grant_type') === 'password') {
        user = form.get('username') ?? undefined;
        pass = form.get('password') ?? undefined;
      }
      scopes = form.getAll('scope');
    }
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const dec = Buffer.from(auth.slice(6), 'base64').toString();
      user = dec.slice(0, dec.indexOf(':'));
      pass = dec.slice(dec.indexOf(':') + 1);
    }
    const flat = scopes.flatMap((s) => s.split(' ')).filter(Boolean);
    if (user !== undefined) {
      if (b.users[user] !== pass) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"details":"bad credentials"}');
        return;
      }
    } else if (!b.anonymousPull || flat.some((s) => !s.endsWith(':pull'))) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"details":"credentials required"}');
      return;
    }
    const t = randomUUID();
    const expiresIn = b.expiresIn ?? 300;
    tokens.set(t, { scopes: flat, expires: Date.now() + expiresIn * 1000 });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: t, expires_in: expiresIn }));
  }

  function forward(req: IncomingMessage, res: ServerResponse): void {
    const headers = { ...req.headers };
    delete headers.authorization;
    const p = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    p.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(err.message));
    });
    req.pipe(p);
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('proxy: no address');
  proxy.host = `127.0.0.1:${addr.port}`;
  proxy.url = `http://${proxy.host}`;
  return proxy;
}
