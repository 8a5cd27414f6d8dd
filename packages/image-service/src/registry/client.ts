import { createHash } from 'node:crypto';
import { BerthError, Code, type Descriptor, errors, type RegistryAuth } from '@berth/api';
import type { Logger } from '@berth/kit';
import { SpanKind, withSpan } from '@berth/kit/tracing';
import type { HostSettings } from '../settings.js';
import { type Challenge, parseChallenges, type TokenCache } from './auth.js';
import type { ResolvedHost } from './hosts-toml.js';
import { bareMediaType, isSchema1, MANIFEST_ACCEPT, MAX_MANIFEST_SIZE } from './media.js';
import { DOCKER_HUB, formatReference, objectOf, type Reference } from './reference.js';
import { type Dispatcher, dispatcherFor } from './tls.js';

/** What the client needs to know about hosts and credentials. */
export interface RegistryClientOptions {
  hosts: Record<string, HostSettings>;
  /** Settings of a host `hosts` does not name (hosts.toml directories), read per request. */
  hostsFallback?: (host: string) => Promise<ResolvedHost | undefined>;
  insecureRegistries: string[];
  tokens: TokenCache;
  /** Credentials for a registry host (from the request or the docker config), if any. */
  credentials: (host: string) => Promise<RegistryAuth | undefined>;
  log?: Logger;
  /**
   * A GET or HEAD whose response headers do not come within this long fails DEADLINE_EXCEEDED
   * (or falls through to the next endpoint), so a registry that accepts the connection and never
   * answers cannot hold a pull for undici's 5-minute default. Bodies are not bounded here: blob
   * downloads have their own no-progress timer. PUT and POST are exempt (their answer follows the
   * whole upload).
   */
  headersTimeoutMs?: number;
}

/** A request to one repository of a registry, relative to `/v2/<repo>/`. */
export interface RepoRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT';
  /** Path after `/v2/<repo>/`, or an absolute upload URL handed out by the registry. */
  path: string;
  headers?: Record<string, string>;
  /** A body factory, so a request can be replayed after an auth challenge. */
  body?: () => NonNullable<RequestInit['body']>;
  /** `pull` or `pull,push`. */
  actions: string;
  /** Extra scopes (cross-repository mount source). */
  extraScopes?: string[];
  signal?: AbortSignal;
  /** Push traffic never goes to mirrors. */
  noMirrors?: boolean;
}

/** A resolved reference: the descriptor the name points at, and the body if a GET was needed. */
export interface Resolved {
  desc: Descriptor;
  body?: Buffer;
}

const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** A URL for a span: no credentials, no query (token endpoints and presigned blob URLs carry secrets). */
function spanUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

/**
 * One registry HTTP request as a CLIENT span (OpenTelemetry HTTP conventions): method, URL without
 * credentials or query, status, and the response size the registry announced. The span ends when
 * the headers are in; a blob body is read later under the blob's own span.
 */
function tracedFetch(method: string, url: string, fn: () => Promise<Response>): Promise<Response> {
  const u = spanUrl(url);
  let host = '';
  let port = 0;
  try {
    const parsed = new URL(url);
    host = parsed.hostname;
    port = Number(parsed.port) || (parsed.protocol === 'https:' ? 443 : 80);
  } catch {
    // spanUrl already says the URL is invalid.
  }
  const attrs = { 'http.request.method': method, 'url.full': u, 'server.address': host, 'server.port': port };
  return withSpan(
    method,
    attrs,
    async (span) => {
      const res = await fn();
      span.setAttribute('http.response.status_code', res.status);
      const len = Number(res.headers.get('content-length'));
      if (Number.isFinite(len) && res.headers.has('content-length'))
        span.setAttribute('http.response.body.size', len);
      return res;
    },
    SpanKind.CLIENT,
  );
}

/**
 * A client of the OCI distribution API written on Node's fetch: endpoint choice (mirrors, Docker
 * Hub's real host, http only for insecure hosts), the 401 challenge flow for Basic and Bearer with
 * a shared token cache, and the manifest and blob operations pull and push need.
 */
export class RegistryClient {
  /** The last challenge each base URL sent, so later requests authenticate up front. */
  private readonly challenges = new Map<string, Challenge>();
  private readonly hostSettings = new Map<string, Promise<ResolvedHost>>();

  constructor(private readonly opts: RegistryClientOptions) {}

  /**
   * The settings of a registry host: from `hosts`, else from its hosts.toml, else none. Read once
   * per client (one pull or push), not once per blob.
   */
  settingsOf(domain: string): Promise<ResolvedHost> {
    let s = this.hostSettings.get(domain);
    if (!s) {
      s = (async () => this.opts.hosts[domain] ?? (await this.opts.hostsFallback?.(domain)) ?? {})();
      this.hostSettings.set(domain, s);
    }
    return s;
  }

  /** Base URLs to try for a registry host: mirrors first (pull only), then the host itself. */
  endpoints(domain: string, withMirrors: boolean, h: HostSettings = this.opts.hosts[domain] ?? {}): string[] {
    const hostOnly = domain.replace(/:\d+$/, '');
    const insecure =
      h.insecure === true || this.opts.insecureRegistries.includes(domain) || LOCAL_HOSTS.has(hostOnly);
    const upstream =
      h.server ??
      (domain === DOCKER_HUB ? 'https://registry-1.docker.io' : `${insecure ? 'http' : 'https'}://${domain}`);
    const list = withMirrors ? [...(h.mirrors ?? [])] : [];
    list.push(upstream);
    return list.map((u) => u.replace(/\/+$/, ''));
  }

  /**
   * Sends a request to the first endpoint that answers, handling one auth challenge per endpoint.
   * Mirrors that fail, 404 or 5xx fall through to the next endpoint; the upstream's answer is returned.
   */
  async request(ref: Reference, req: RepoRequest): Promise<Response> {
    const name = formatReference(ref);
    const host = await this.settingsOf(ref.domain);
    const bases = this.endpoints(
      ref.domain,
      !req.noMirrors && req.method !== 'PUT' && req.method !== 'POST',
      host,
    );
    let lastErr: unknown;
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i] as string;
      const last = i === bases.length - 1;
      let res: Response;
      try {
        const why = host.unsupported?.[base];
        if (why) {
          throw new BerthError(
            Code.UNIMPLEMENTED,
            `${host.file ?? 'hosts.toml'}: ${why} for ${base} is not supported by berth yet (needed for "${name}")`,
          );
        }
        res = await this.send(ref, base, req, host.headers?.[base], await dispatcherFor(host, base));
      } catch (err) {
        // A mirror that does not answer in time is skipped like one that is unreachable.
        if (err instanceof BerthError && (last || err.code !== Code.DEADLINE_EXCEEDED)) throw err;
        if (req.signal?.aborted) throw err;
        lastErr = err;
        this.opts.log?.debug({ base, err: (err as Error).message }, 'registry endpoint failed');
        if (!last) continue;
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new BerthError(
          Code.UNAVAILABLE,
          `registry ${ref.domain} is unreachable for "${name}": ${cause?.code ?? cause?.message ?? (err as Error).message}`,
          { cause: err },
        );
      }
      if (!last && (res.status === 404 || res.status >= 500)) {
        await res.body?.cancel().catch(() => undefined);
        continue;
      }
      return res;
    }
    throw errors.unavailable(`no registry endpoint answered for "${name}"`, lastErr);
  }

  private async send(
    ref: Reference,
    base: string,
    req: RepoRequest,
    extraHeaders: Record<string, string> = {},
    dispatcher?: Dispatcher,
  ): Promise<Response> {
    const url = /^https?:\/\//.test(req.path) ? req.path : `${base}/v2/${ref.path}/${req.path}`;
    const scopes = [`repository:${ref.path}:${req.actions}`, ...(req.extraScopes ?? [])];
    const doFetch = (auth: string | undefined) => tracedFetch(req.method, url, () => fetchOnce(auth));
    const fetchOnce = async (auth: string | undefined) => {
      const headers: Record<string, string> = { ...extraHeaders, ...req.headers };
      if (auth) headers.authorization = auth;
      const init: RequestInit & { duplex?: 'half'; dispatcher?: Dispatcher } = {
        method: req.method,
        headers,
        redirect: 'follow',
      };
      if (dispatcher) init.dispatcher = dispatcher;
      if (req.signal) init.signal = req.signal;
      if (req.body) {
        init.body = req.body();
        init.duplex = 'half';
      }
      const ms = this.opts.headersTimeoutMs;
      if (!ms || (req.method !== 'GET' && req.method !== 'HEAD')) return fetch(url, init);
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(), ms);
      init.signal = req.signal ? AbortSignal.any([req.signal, deadline.signal]) : deadline.signal;
      try {
        return await fetch(url, init);
      } catch (err) {
        if (deadline.signal.aborted && !req.signal?.aborted) {
          throw new BerthError(
            Code.DEADLINE_EXCEEDED,
            `registry ${ref.domain} did not answer within ${ms} ms for "${formatReference(ref)}" (${req.method} ${url})`,
            { cause: err },
          );
        }
        throw err;
      } finally {
        // Cleared once the headers are in, so the deadline never cuts a body being read.
        clearTimeout(timer);
      }
    };
    const known = this.challenges.get(base);
    let res = await doFetch(known ? await this.authorization(ref, known, scopes) : undefined);
    if (res.status !== 401) return res;
    const header = res.headers.get('www-authenticate') ?? '';
    await res.body?.cancel().catch(() => undefined);
    const ch =
      parseChallenges(header).find((c) => c.scheme === 'bearer') ??
      parseChallenges(header).find((c) => c.scheme === 'basic');
    if (!ch) throw this.unauthenticated(ref, 'the registry answered 401 without a usable challenge');
    this.challenges.set(base, ch);
    // The registry names the scope it wants; ask for it plus ours (mount sources).
    const wanted = ch.params.scope ? [...new Set([ch.params.scope, ...scopes])] : scopes;
    const auth = await this.authorization(ref, ch, wanted);
    if (!auth) throw this.unauthenticated(ref, 'credentials are required');
    res = await doFetch(auth);
    if (res.status === 401) {
      await res.body?.cancel().catch(() => undefined);
      throw this.unauthenticated(ref, 'the registry refused the credentials');
    }
    return res;
  }

  private unauthenticated(ref: Reference, why: string): BerthError {
    return new BerthError(
      Code.UNAUTHENTICATED,
      `authentication to ${ref.domain} failed for "${formatReference(ref)}": ${why} (try 'berth login ${ref.domain}')`,
    );
  }

  /** The Authorization header value for a challenge, fetching a bearer token when needed. */
  private async authorization(ref: Reference, ch: Challenge, scopes: string[]): Promise<string | undefined> {
    const creds = await this.opts.credentials(ref.domain);
    if (ch.scheme === 'basic') {
      if (!creds?.username || creds.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    }
    if (creds?.registryToken) return `Bearer ${creds.registryToken}`;
    const realm = ch.params.realm;
    if (!realm) throw this.unauthenticated(ref, 'bearer challenge without a realm');
    const service = ch.params.service ?? '';
    const scope = [...new Set(scopes)].sort().join(' ');
    const key = `${realm}|${service}|${scope}|${creds?.username ?? ''}`;
    const cached = this.opts.tokens.get(key);
    if (cached) return `Bearer ${cached}`;
    const tok = await this.fetchToken(ref, realm, service, [...new Set(scopes)], creds);
    this.opts.tokens.set(key, tok.token, tok.expiresIn);
    return `Bearer ${tok.token}`;
  }

  /** The token flow of the distribution auth spec: POST (password / refresh token) or GET. */
  private async fetchToken(
    ref: Reference,
    realm: string,
    service: string,
    scopes: string[],
    creds: RegistryAuth | undefined,
  ): Promise<{ token: string; expiresIn: number }> {
    let res: Response | undefined;
    // The same bound as registry requests: a token server that never answers fails the pull.
    const ms = this.opts.headersTimeoutMs;
    const signal = ms ? AbortSignal.timeout(ms) : undefined;
    try {
      if (creds?.identityToken || (creds?.username && creds.password !== undefined)) {
        const form = new URLSearchParams({ client_id: 'berth', service });
        for (const s of scopes) form.append('scope', s);
        if (creds.identityToken) {
          form.set('grant_type', 'refresh_token');
          form.set('refresh_token', creds.identityToken);
        } else {
          form.set('grant_type', 'password');
          form.set('username', creds.username as string);
          form.set('password', creds.password as string);
        }
        res = await tracedFetch('POST', realm, () =>
          fetch(realm, { method: 'POST', body: form, ...(signal ? { signal } : {}) }),
        );
        // Token servers without OAuth2 POST support answer 404/405/400/401: use the GET flow.
        if ([400, 401, 404, 405].includes(res.status) && !creds.identityToken) {
          await res.body?.cancel().catch(() => undefined);
          res = undefined;
        }
      }
      if (!res) {
        const u = new URL(realm);
        if (service) u.searchParams.set('service', service);
        for (const s of scopes) u.searchParams.append('scope', s);
        const headers: Record<string, string> = {};
        if (creds?.username && creds.password !== undefined) {
          headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
        }
        res = await tracedFetch('GET', u.href, () => fetch(u, { headers, ...(signal ? { signal } : {}) }));
      }
    } catch (err) {
      if (signal?.aborted) {
        throw new BerthError(
          Code.DEADLINE_EXCEEDED,
          `token server ${realm} did not answer within ${ms} ms for "${formatReference(ref)}"`,
          { cause: err },
        );
      }
      throw errors.unavailable(
        `token server ${realm} is unreachable for "${formatReference(ref)}": ${(err as Error).message}`,
        err,
      );
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel().catch(() => undefined);
      throw this.unauthenticated(
        ref,
        `the token server refused the ${creds ? 'credentials' : 'anonymous request'}`,
      );
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw errors.unavailable(`token server ${realm} answered ${res.status} for "${formatReference(ref)}"`);
    }
    const body = (await res.json().catch(() => ({}))) as {
      token?: string;
      access_token?: string;
      expires_in?: number;
    };
    const token = body.token ?? body.access_token;
    if (!token) throw this.unauthenticated(ref, 'the token server returned no token');
    return { token, expiresIn: typeof body.expires_in === 'number' ? body.expires_in : 60 };
  }

  /**
   * Checks the credentials for a registry against its /v2/ endpoint, as `docker login` does:
   * resolves on success, UNAUTHENTICATED when refused, UNAVAILABLE when unreachable.
   */
  async checkLogin(domain: string): Promise<void> {
    const ref: Reference = { domain, path: '' };
    const host = await this.settingsOf(domain);
    const base = this.endpoints(domain, false, host)[0] as string;
    const dispatcher = await dispatcherFor(host, base);
    const get = async (auth?: string) => {
      try {
        const init: RequestInit & { dispatcher?: Dispatcher } = auth
          ? { headers: { authorization: auth } }
          : {};
        if (dispatcher) init.dispatcher = dispatcher;
        return await fetch(`${base}/v2/`, init);
      } catch (err) {
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw errors.unavailable(
          `registry ${domain} is unreachable: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
          err,
        );
      }
    };
    const first = await get();
    await first.body?.cancel().catch(() => undefined);
    if (first.ok) return;
    const refused = new BerthError(
      Code.UNAUTHENTICATED,
      `login to ${domain} failed: the registry refused the credentials`,
    );
    if (first.status !== 401) throw errors.unavailable(`registry ${domain} answered ${first.status} on /v2/`);
    const chs = parseChallenges(first.headers.get('www-authenticate') ?? '');
    const ch = chs.find((c) => c.scheme === 'bearer') ?? chs.find((c) => c.scheme === 'basic');
    if (!ch) throw refused;
    let auth: string | undefined;
    try {
      auth = await this.authorization(ref, ch, []);
    } catch (err) {
      if (err instanceof BerthError && err.code === Code.UNAUTHENTICATED) throw refused;
      throw err;
    }
    if (!auth) throw refused;
    const second = await get(auth);
    await second.body?.cancel().catch(() => undefined);
    if (!second.ok) throw refused;
  }

  /**
   * Resolves a reference to the descriptor it names: HEAD first (digest from Docker-Content-Digest),
   * GET when the HEAD answer lacks the digest, size or type. Refuses schema1 and oversized manifests.
   */
  async resolve(ref: Reference, signal?: AbortSignal): Promise<Resolved> {
    const name = formatReference(ref);
    const path = `manifests/${objectOf(ref)}`;
    const head = await this.request(ref, {
      method: 'HEAD',
      path,
      headers: { accept: MANIFEST_ACCEPT },
      actions: 'pull',
      signal,
    });
    if (head.ok) {
      const mediaType = bareMediaType(head.headers.get('content-type'));
      const digest = ref.digest ?? head.headers.get('docker-content-digest') ?? undefined;
      const len = head.headers.get('content-length');
      const size = len === null ? undefined : Number(len);
      if (size !== undefined && size > MAX_MANIFEST_SIZE) throw tooLarge(name, size);
      if (isSchema1(mediaType)) throw schema1(name);
      if (
        digest &&
        size !== undefined &&
        mediaType &&
        mediaType !== 'application/json' &&
        /^sha256:[a-f0-9]{64}$/.test(digest)
      ) {
        return { desc: { mediaType, digest, size } };
      }
    } else if (head.status === 403) {
      throw new BerthError(Code.PERMISSION_DENIED, `access to "${name}" is denied by ${ref.domain}`);
    }
    const res = await this.request(ref, {
      method: 'GET',
      path,
      headers: { accept: MANIFEST_ACCEPT },
      actions: 'pull',
      signal,
    });
    await this.check(res, ref, `manifest of "${name}"`);
    const body = await readLimited(res, MAX_MANIFEST_SIZE, name);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (ref.digest && ref.digest !== digest) {
      throw new BerthError(
        Code.DATA_LOSS,
        `manifest of "${name}" does not match its digest: registry served ${digest}`,
      );
    }
    let mediaType = bareMediaType(res.headers.get('content-type'));
    let parsed: { mediaType?: string; schemaVersion?: number } = {};
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
    } catch {
      throw errors.invalid(`manifest of "${name}" is not valid JSON`);
    }
    if (parsed.schemaVersion === 1 || isSchema1(mediaType)) throw schema1(name);
    if (!mediaType || mediaType === 'application/json' || mediaType === 'text/plain') {
      mediaType = parsed.mediaType ?? guessMediaType(parsed);
    }
    return { desc: { mediaType, digest, size: body.length }, body };
  }

  /** Fetches a manifest or index by digest and verifies size and digest. */
  async fetchManifest(ref: Reference, desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    const name = formatReference(ref);
    if (desc.size > MAX_MANIFEST_SIZE) throw tooLarge(name, desc.size);
    const res = await this.request(ref, {
      method: 'GET',
      path: `manifests/${desc.digest}`,
      headers: { accept: desc.mediaType || MANIFEST_ACCEPT },
      actions: 'pull',
      signal,
    });
    await this.check(res, ref, `manifest ${desc.digest} of "${name}"`);
    const body = await readLimited(res, MAX_MANIFEST_SIZE, name);
    verifyBuffer(body, desc, `manifest of "${name}"`);
    return body;
  }

  /** Starts a blob download at `offset` (Range); the caller checks 206 versus 200. */
  async fetchBlob(ref: Reference, digest: string, offset: number, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.request(ref, {
      method: 'GET',
      path: `blobs/${digest}`,
      headers,
      actions: 'pull',
      signal,
    });
    await this.check(res, ref, `blob ${digest} of "${formatReference(ref)}"`);
    return res;
  }

  /** True when the repository already has the blob (HEAD /blobs/<digest>). */
  async blobExists(ref: Reference, digest: string): Promise<boolean> {
    const res = await this.request(ref, {
      method: 'HEAD',
      path: `blobs/${digest}`,
      actions: 'pull,push',
      noMirrors: true,
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status === 404) return false;
    if (res.ok) return true;
    await this.check(res, ref, `blob ${digest} of "${formatReference(ref)}"`);
    return false;
  }

  /**
   * Starts an upload; with `mountFrom` asks for a cross-repository mount first. Returns `mounted`
   * when the registry linked the blob (201), else the upload URL.
   */
  async startUpload(
    ref: Reference,
    digest: string,
    mountFrom?: string,
  ): Promise<{ mounted: boolean; location?: string }> {
    const path = mountFrom
      ? `blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}`
      : 'blobs/uploads/';
    const res = await this.request(ref, {
      method: 'POST',
      path,
      headers: { 'content-length': '0' },
      actions: 'pull,push',
      extraScopes: mountFrom ? [`repository:${mountFrom}:pull`] : [],
      noMirrors: true,
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status === 201 && mountFrom) return { mounted: true };
    if (res.status !== 202) await this.check(res, ref, `upload to "${formatReference(ref)}"`);
    const loc = res.headers.get('location');
    if (!loc)
      throw errors.internal(`registry ${ref.domain} gave no upload location for "${formatReference(ref)}"`);
    return { mounted: false, location: new URL(loc, res.url).toString() };
  }

  /** Completes an upload with the whole blob in one PUT. */
  async putBlob(
    ref: Reference,
    location: string,
    digest: string,
    size: number,
    body: () => NonNullable<RequestInit['body']>,
  ): Promise<void> {
    const u = new URL(location);
    u.searchParams.set('digest', digest);
    const res = await this.request(ref, {
      method: 'PUT',
      path: u.toString(),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body,
      actions: 'pull,push',
      noMirrors: true,
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status !== 201)
      await this.check(res, ref, `upload of blob ${digest} to "${formatReference(ref)}"`);
  }

  /** Uploads a manifest or index under a tag or digest. */
  async putManifest(ref: Reference, reference: string, mediaType: string, body: Buffer): Promise<void> {
    const res = await this.request(ref, {
      method: 'PUT',
      path: `manifests/${reference}`,
      headers: { 'content-type': mediaType },
      body: () => new Uint8Array(body),
      actions: 'pull,push',
      noMirrors: true,
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status !== 201 && res.status !== 200) {
      await this.check(res, ref, `manifest upload to "${formatReference(ref)}"`);
    }
  }

  /** Turns a non-2xx answer into a BerthError naming the object; returns for 2xx. */
  private async check(res: Response, ref: Reference, what: string): Promise<void> {
    if (res.ok) return;
    let detail = '';
    try {
      const text = await res.text();
      const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      detail = (body.errors ?? []).map((e) => e.message ?? e.code).join('; ');
    } catch {
      // No JSON error body: the status is all there is.
    }
    const suffix = detail ? `: ${detail}` : '';
    const name = formatReference(ref);
    if (res.status === 404) {
      throw new BerthError(
        Code.NOT_FOUND,
        `${what === `manifest of "${name}"` ? `image "${name}"` : what} not found${suffix}`,
      );
    }
    if (res.status === 401) throw this.unauthenticated(ref, `401${suffix}`);
    if (res.status === 403) throw new BerthError(Code.PERMISSION_DENIED, `access to ${what} denied${suffix}`);
    if (res.status === 429)
      throw new BerthError(Code.RESOURCE_EXHAUSTED, `${ref.domain} rate-limited ${what}${suffix}`);
    throw new BerthError(Code.UNAVAILABLE, `${ref.domain} answered ${res.status} for ${what}${suffix}`);
  }
}

function tooLarge(name: string, size: number): BerthError {
  return errors.invalid(`manifest of "${name}" is ${size} bytes, over the ${MAX_MANIFEST_SIZE}-byte limit`);
}

function schema1(name: string): BerthError {
  return new BerthError(
    Code.FAILED_PRECONDITION,
    `image "${name}" uses a Docker schema1 manifest, which is not supported; push it again with a current client`,
  );
}

function guessMediaType(m: Record<string, unknown>): string {
  if (Array.isArray(m.manifests)) return 'application/vnd.oci.image.index.v1+json';
  return 'application/vnd.oci.image.manifest.v1+json';
}

/** Reads a response body up to `limit` bytes, refusing more. */
export async function readLimited(res: Response, limit: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  if (!res.body) return Buffer.alloc(0);
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    n += chunk.length;
    if (n > limit) {
      await res.body.cancel().catch(() => undefined);
      throw errors.invalid(`manifest of "${name}" is over the ${limit}-byte limit`);
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** Checks a buffer against a descriptor's size and digest. */
export function verifyBuffer(body: Buffer, desc: Descriptor, what: string): void {
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  if (body.length !== desc.size || digest !== desc.digest) {
    throw new BerthError(
      Code.DATA_LOSS,
      `${what} failed verification: expected ${desc.digest} (${desc.size} bytes), got ${digest} (${body.length} bytes)`,
    );
  }
}
