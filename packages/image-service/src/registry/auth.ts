import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { RegistryAuth } from '@berth/api';
import { helperGet } from './credential-helper.js';

/** One parsed WWW-Authenticate challenge: scheme (lowercased) and its parameters. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header (RFC 7235): `Bearer realm="…",service="…",scope="a,b"`.
 * Several challenges may share one header; quoted values may contain commas and escapes.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
  };
  const token = () => {
    const start = i;
    while (i < s.length && /[!#$%&'*+\-.^_`|~0-9A-Za-z]/.test(s[i] as string)) i++;
    return s.slice(start, i);
  };
  while (i < s.length) {
    skipWs();
    const scheme = token();
    if (!scheme) break;
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    for (;;) {
      while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
      const save = i;
      const key = token();
      while (i < s.length && s[i] === ' ') i++;
      if (!key || s[i] !== '=') {
        // Not a parameter: the start of the next challenge (or garbage we stop at).
        i = save;
        break;
      }
      i++;
      while (i < s.length && s[i] === ' ') i++;
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++;
      } else {
        value = token();
      }
      ch.params[key.toLowerCase()] = value;
      while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
      if (s[i] === ',') i++;
      else break;
    }
  }
  return out;
}

/** The path of the docker-style credentials file: $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
}

/** The key config.json uses for a registry host (Docker Hub keeps its historical URL). */
export function configKeyOf(host: string): string {
  return host === 'docker.io' ? 'https://index.docker.io/v1/' : host;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  /** Helper holding every registry's credentials (docker-credential-NAME). */
  credsStore?: string;
  /** Helper per registry host, before credsStore. */
  credHelpers?: Record<string, string>;
}

/**
 * The credential helper docker would use for `host` with this config: credHelpers[host], else
 * credsStore, else none (the credentials are in `auths`).
 */
export function helperFor(cfg: DockerConfigFile, host: string): string | undefined {
  const named = cfg.credHelpers?.[host] ?? cfg.credHelpers?.[configKeyOf(host)];
  if (typeof named === 'string' && named !== '') return named;
  return typeof cfg.credsStore === 'string' && cfg.credsStore !== '' ? cfg.credsStore : undefined;
}

/** Reads a docker config.json: undefined when there is none or it cannot be parsed. */
export async function readDockerConfig(file = dockerConfigPath()): Promise<DockerConfigFile | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as unknown;
    return parsed !== null && typeof parsed === 'object' ? (parsed as DockerConfigFile) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads credentials for `host` as docker does from a docker config.json: through its credential
 * helper when credHelpers or credsStore names one (`docker-credential-NAME get`), else from
 * `auths`. Undefined when there are none; a helper that fails is a FAILED_PRECONDITION naming it
 * (an anonymous pull instead would end in a confusing "unauthorized").
 */
export async function credentialsFromDockerConfig(
  host: string,
  file = dockerConfigPath(),
): Promise<RegistryAuth | undefined> {
  const parsed = await readDockerConfig(file);
  if (!parsed) return undefined;
  const helper = helperFor(parsed, host);
  if (helper) return helperGet(helper, configKeyOf(host));
  const auths = parsed.auths ?? {};
  const wanted = configKeyOf(host);
  // Entries may be written as bare hosts or as URLs (https://host/v1/).
  const entry =
    auths[wanted] ??
    Object.entries(auths).find(([k]) => k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === host)?.[1];
  if (!entry) return undefined;
  if (entry.identitytoken) return { identityToken: entry.identitytoken, username: entry.username };
  if (entry.auth) {
    const dec = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = dec.indexOf(':');
    if (colon > 0) return { username: dec.slice(0, colon), password: dec.slice(colon + 1) };
  }
  if (entry.username && entry.password) return { username: entry.username, password: entry.password };
  return undefined;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/**
 * Bearer tokens cached per (realm, service, scope, user) until shortly before they expire, shared by
 * every pull and push of the process so one token serves many requests.
 */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  get(key: string): string | undefined {
    const t = this.tokens.get(key);
    if (!t) return undefined;
    if (Date.now() >= t.expiresAt) {
      this.tokens.delete(key);
      return undefined;
    }
    return t.token;
  }

  set(key: string, token: string, expiresInSec: number): void {
    // Renew a little early so a token never expires between lookup and use.
    const lifetimeMs = Math.max(1, expiresInSec) * 1000;
    this.tokens.set(key, { token, expiresAt: Date.now() + lifetimeMs * 0.9 });
  }
}
