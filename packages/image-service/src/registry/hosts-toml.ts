import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { BerthError, Code, errors } from '@berth/api';
import { parse, TomlError } from 'smol-toml';
import type { HostSettings } from '../settings.js';

/**
 * Registry host settings read from containerd's hosts.toml layout: `<dir>/<host>/hosts.toml` (the
 * host with its port, `127.0.0.1:5000`), else `<dir>/_default/hosts.toml`. The file names the
 * upstream (`server`) and, in order, the hosts to try first (`[host."URL"]`, mirrors), each with
 * `capabilities`, `header`, `skip_verify` and `ca`. What berth does not do yet (client certificates,
 * override_path, dial_timeout) makes a pull through that endpoint fail UNIMPLEMENTED naming the
 * file, rather than quietly ignoring a setting the user relies on.
 */

/** TLS settings of one endpoint: hosts.toml `skip_verify` and `ca` (files, absolute or beside the file). */
export interface EndpointTls {
  skipVerify?: boolean;
  caFiles?: string[];
}

/** Host settings as read from a hosts.toml, with what cannot be honoured yet per endpoint. */
export interface ResolvedHost extends HostSettings {
  /** The file they came from. */
  file?: string;
  /** Per base URL, its TLS settings. */
  tls?: Record<string, EndpointTls>;
  /** Per base URL, why requests to it cannot be made as configured (UNIMPLEMENTED). */
  unsupported?: Record<string, string>;
}

const CAPABILITIES = new Set(['pull', 'resolve', 'push']);
const HOST_KEYS = new Set([
  'capabilities',
  'skip_verify',
  'ca',
  'client',
  'header',
  'override_path',
  'dial_timeout',
]);
const TOP_KEYS = new Set([...HOST_KEYS, 'server', 'host']);
const LOOPBACK = /^(localhost|127\.0\.0\.1|\[::1\])(:\d+)?(\/|$)/;

function invalid(file: string, what: string): BerthError {
  return errors.invalid(`${file}: ${what}`);
}

/** `https://mirror.example/` -> `https://mirror.example`; a bare host gets https (http on loopback). */
export function baseUrlOf(raw: string, file: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw)
    ? raw
    : `${LOOPBACK.test(raw) ? 'http' : 'https'}://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw invalid(file, `host ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw invalid(file, `host ${JSON.stringify(raw)}: only http and https are supported`);
  // containerd accepts the API root spelled with its /v2 suffix.
  return `${url.origin}${url.pathname.replace(/\/+$/, '').replace(/\/v2$/, '')}`;
}

function headersOf(v: unknown, file: string, where: string): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw invalid(file, `${where}header must be a table`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    const list = Array.isArray(val) ? val : [val];
    if (!list.every((x) => typeof x === 'string'))
      throw invalid(file, `${where}header.${k} must be a string or an array of strings`);
    out[k.toLowerCase()] = list.join(', ');
  }
  return out;
}

/** What an entry asks that berth cannot do yet; undefined when nothing. */
function unsupportedOf(entry: Record<string, unknown>): string | undefined {
  const keys: string[] = [];
  if (entry.client !== undefined) keys.push('client');
  if (entry.override_path === true) keys.push('override_path');
  if (entry.dial_timeout !== undefined) keys.push('dial_timeout');
  return keys.length > 0 ? keys.join(', ') : undefined;
}

/** An entry's skip_verify and ca, ca files resolved against the hosts.toml's directory. */
function tlsOf(entry: Record<string, unknown>, file: string, where: string): EndpointTls | undefined {
  const tls: EndpointTls = {};
  if (entry.skip_verify === true) tls.skipVerify = true;
  if (entry.ca !== undefined) {
    const list = Array.isArray(entry.ca) ? entry.ca : [entry.ca];
    if (list.length === 0 || !list.every((c) => typeof c === 'string' && c !== ''))
      throw invalid(file, `${where}ca must be a file name or an array of file names`);
    tls.caFiles = (list as string[]).map((c) => (isAbsolute(c) ? c : join(dirname(file), c)));
  }
  return Object.keys(tls).length > 0 ? tls : undefined;
}

function checkEntry(
  entry: Record<string, unknown>,
  file: string,
  where: string,
  allowed: Set<string>,
): string[] {
  for (const k of Object.keys(entry)) if (!allowed.has(k)) throw invalid(file, `unknown key ${where}${k}`);
  if (entry.skip_verify !== undefined && typeof entry.skip_verify !== 'boolean')
    throw invalid(file, `${where}skip_verify must be true or false`);
  if (entry.override_path !== undefined && typeof entry.override_path !== 'boolean')
    throw invalid(file, `${where}override_path must be true or false`);
  const caps = entry.capabilities ?? ['pull', 'resolve', 'push'];
  if (!Array.isArray(caps) || !caps.every((c) => typeof c === 'string' && CAPABILITIES.has(c)))
    throw invalid(file, `${where}capabilities must be an array of "pull", "resolve", "push"`);
  return caps as string[];
}

/**
 * Parses one hosts.toml for registry `host`. Hosts with the pull or resolve capability become the
 * host's mirrors, in file order (berth resolves and fetches through the same endpoints); pushes
 * go to `server` only. Throws INVALID_ARGUMENT naming the file for a syntax error or an unknown key.
 */
export function parseHostsToml(text: string, file: string, host: string): ResolvedHost {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    const why = err instanceof TomlError ? err.message.split('\n')[0] : (err as Error).message;
    throw invalid(file, `not valid TOML: ${why}`);
  }
  checkEntry(doc, file, '', TOP_KEYS);
  const out: ResolvedHost = { file };
  const server = doc.server;
  if (server !== undefined && typeof server !== 'string') throw invalid(file, 'server must be a string');
  if (server) out.server = baseUrlOf(server, file);
  const headers: Record<string, Record<string, string>> = {};
  const unsupported: Record<string, string> = {};
  const upstream = out.server;
  if (doc.header !== undefined) {
    if (!upstream)
      throw invalid(file, `header at the top applies to server, which is not set (host ${host})`);
    headers[upstream] = headersOf(doc.header, file, '');
  }
  const tls: Record<string, EndpointTls> = {};
  const topUnsupported = unsupportedOf(doc);
  const topTls = tlsOf(doc, file, '');
  if ((topUnsupported || topTls) && !upstream)
    throw invalid(file, `settings at the top apply to server, which is not set (host ${host})`);
  if (topUnsupported && upstream) unsupported[upstream] = topUnsupported;
  if (topTls && upstream) tls[upstream] = topTls;
  const hosts = doc.host ?? {};
  if (typeof hosts !== 'object' || hosts === null || Array.isArray(hosts))
    throw invalid(file, 'host must be a table');
  const mirrors: string[] = [];
  for (const [raw, value] of Object.entries(hosts)) {
    const where = `host.${JSON.stringify(raw)}.`;
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw invalid(file, `${where} must be a table`);
    const entry = value as Record<string, unknown>;
    const caps = checkEntry(entry, file, where, HOST_KEYS);
    const base = baseUrlOf(raw, file);
    if (entry.header !== undefined) headers[base] = headersOf(entry.header, file, where);
    const why = unsupportedOf(entry);
    if (why) unsupported[base] = why;
    const t = tlsOf(entry, file, where);
    if (t) tls[base] = t;
    if (caps.includes('pull') || caps.includes('resolve')) mirrors.push(base);
  }
  if (mirrors.length > 0) out.mirrors = mirrors;
  if (Object.keys(headers).length > 0) out.headers = headers;
  if (Object.keys(unsupported).length > 0) out.unsupported = unsupported;
  if (Object.keys(tls).length > 0) out.tls = tls;
  return out;
}

/**
 * The settings of registry `host` from the first of `dirs` holding `<host>/hosts.toml`, else the
 * first holding `_default/hosts.toml`; undefined when none does. Read on every call, as containerd
 * does, so an edit applies to the next pull without a restart.
 */
export async function hostsFromDirs(
  dirs: readonly string[],
  host: string,
): Promise<ResolvedHost | undefined> {
  if (!/^[A-Za-z0-9.[\]:_-]+$/.test(host) || host.includes('..'))
    throw new BerthError(Code.INVALID_ARGUMENT, `registry host ${JSON.stringify(host)} is not a host name`);
  for (const name of [host, '_default']) {
    for (const dir of dirs) {
      const file = join(dir, name, 'hosts.toml');
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        if (
          (err as NodeJS.ErrnoException).code === 'ENOENT' ||
          (err as NodeJS.ErrnoException).code === 'ENOTDIR'
        )
          continue;
        throw errors.unavailable(`cannot read ${file}: ${(err as Error).message}`, err);
      }
      return parseHostsToml(text, file, host);
    }
  }
  return undefined;
}
