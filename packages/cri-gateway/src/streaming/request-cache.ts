import { randomBytes } from 'node:crypto';
import { BerthError, Code } from '@berth/api';
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamKind } from './types.js';

/** A cached request with its kind, so a token minted for exec cannot open an attach. */
export type CachedRequest =
  | { kind: 'exec'; request: ExecRequest }
  | { kind: 'attach'; request: AttachRequest }
  | { kind: 'portforward'; request: PortForwardRequest };

interface Entry {
  cached: CachedRequest;
  expiresAt: number;
}

/**
 * Holds streaming requests behind random one-shot tokens, as kubelet's request cache does: the CRI
 * handler stores the request and hands out a URL naming only the token; the first connection that
 * presents it takes the request out, so a leaked URL cannot be replayed, and unused ones expire.
 */
export class RequestCache {
  // Map iteration order is insertion order, which is expiry order since the TTL is fixed.
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxInFlight: number,
    private readonly now: () => number,
  ) {}

  /** Stores the request and returns its token; RESOURCE_EXHAUSTED when too many are unused. */
  insert(cached: CachedRequest): string {
    this.collect();
    if (this.entries.size >= this.maxInFlight) {
      throw new BerthError(
        Code.RESOURCE_EXHAUSTED,
        `streaming server has ${this.entries.size} unused ${cached.kind} URLs, the most it holds`,
      );
    }
    let token = newToken();
    // 96 random bits collide essentially never; the loop only keeps the invariant explicit.
    while (this.entries.has(token)) token = newToken();
    this.entries.set(token, { cached, expiresAt: this.now() + this.ttlMs });
    return token;
  }

  /** Takes the request out (whether or not it matches); undefined if unknown, expired or of another kind. */
  consume(kind: StreamKind, token: string): CachedRequest | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    if (this.now() > entry.expiresAt) return undefined;
    if (entry.cached.kind !== kind) return undefined;
    return entry.cached;
  }

  /** Number of tokens still held (expired ones included until the next insert). */
  get size(): number {
    return this.entries.size;
  }

  private collect(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) {
      if (entry.expiresAt >= now) return;
      this.entries.delete(token);
    }
  }
}

function newToken(): string {
  return randomBytes(12).toString('base64url');
}
