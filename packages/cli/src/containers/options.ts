import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type BindMount, type CreateContainerRequest, errors, type Resources } from '@berth/api';
import type { CommandArgs } from '../command.js';
import type { Caller } from '../context.js';
import { parsePublish } from './ports.js';
import { parseSecurityOpts } from './security-opts.js';

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Parses a docker memory value ("64m", "1g", "1048576"). */
export function parseBytes(flag: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$/i.exec(v.trim());
  const mult = m ? UNITS[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || mult === undefined)
    throw errors.invalid(`invalid ${flag} value "${v}": expected a size like 64m or 1g`);
  const n = Math.floor(Number(m[1]) * mult);
  if (n <= 0) throw errors.invalid(`invalid ${flag} value "${v}": must be positive`);
  return n;
}

function parseNumber(flag: string, v: string, integer: boolean): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw errors.invalid(`invalid ${flag} value "${v}": expected ${integer ? 'an integer' : 'a number'}`);
  }
  return n;
}

/** Parses `-v host:ctr[:ro|rw]`: binds only, absolute paths. */
export function parseVolume(v: string): BindMount {
  const parts = v.split(':');
  const [source, destination, mode] = parts;
  if (parts.length < 2 || parts.length > 3 || !source || !destination) {
    throw errors.invalid(`invalid volume "${v}": expected /host/path:/container/path[:ro]`);
  }
  if (!source.startsWith('/')) throw errors.invalid(`invalid volume "${v}": the host path must be absolute`);
  if (!destination.startsWith('/')) {
    throw errors.invalid(`invalid volume "${v}": the container path must be absolute`);
  }
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') {
    throw errors.invalid(`invalid volume "${v}": mode must be ro or rw`);
  }
  return { source, destination, readonly: mode === 'ro' };
}

/** KEY=VALUE entries; a bare KEY takes the caller's value (and is dropped when unset), as docker. */
function envEntries(list: string[], env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const e of list) {
    if (e.includes('=')) out.push(e);
    else if (env[e] !== undefined) out.push(`${e}=${env[e]}`);
  }
  return out;
}

function readEnvFile(path: string, caller: Caller): string[] {
  let text: string;
  try {
    text = readFileSync(resolve(caller.cwd, path), 'utf8');
  } catch (err) {
    throw errors.invalid(`cannot read env file "${path}": ${(err as Error).message}`);
  }
  return envEntries(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0 && !l.startsWith('#')),
    caller.env,
  );
}

/** The resource flags (--memory, --cpus, --cpu-shares, --pids-limit), parsed. */
export function toResources(v: CommandArgs['values']): Resources {
  const r: Resources = {};
  if (typeof v.memory === 'string') r.memoryBytes = parseBytes('--memory', v.memory);
  if (typeof v.cpus === 'string') r.cpus = parseNumber('--cpus', v.cpus, false);
  if (typeof v['cpu-shares'] === 'string') r.cpuShares = parseNumber('--cpu-shares', v['cpu-shares'], true);
  if (typeof v['pids-limit'] === 'string') r.pidsLimit = parseNumber('--pids-limit', v['pids-limit'], true);
  return r;
}

/** A flag's values as strings: none, one, or all of a `multiple` one. */
export const strs = (v: unknown): string[] =>
  Array.isArray(v) ? v.map(String) : v === undefined ? [] : [String(v)];

/** Turns `create`/`run` flags and positionals (IMAGE [CMD...]) into a create request. */
export function toCreateRequest(
  args: CommandArgs,
  node: string,
  caller: Caller = { env: process.env, cwd: process.cwd() },
): CreateContainerRequest {
  const v = args.values;
  const [image, ...cmd] = args.positionals;
  if (!image) throw errors.invalid('an image is required: berth run [OPTIONS] IMAGE [COMMAND] [ARG...]');
  const req: CreateContainerRequest = { image, node };
  if (cmd.length) req.cmd = cmd;
  if (typeof v.name === 'string') req.name = v.name;
  const env = [
    ...strs(v['env-file']).flatMap((f) => readEnvFile(f, caller)),
    ...envEntries(strs(v.env), caller.env),
  ];
  if (env.length) req.env = env;
  if (typeof v.workdir === 'string') req.workdir = v.workdir;
  if (typeof v.user === 'string') req.user = v.user;
  if (typeof v.hostname === 'string') req.hostname = v.hostname;
  if (typeof v.entrypoint === 'string') req.entrypoint = v.entrypoint === '' ? [] : [v.entrypoint];
  const mounts = strs(v.volume).map(parseVolume);
  if (mounts.length) req.mounts = mounts;
  const r = toResources(v);
  if (Object.keys(r).length) req.resources = r;
  if (v['read-only']) req.readonlyRootfs = true;
  // bridge by default, as docker and nerdctl: an address on the node's CNI network.
  const net = ((v.network ?? v.net) as string | undefined) ?? 'bridge';
  if (net !== 'none' && net !== 'host' && net !== 'bridge') {
    throw errors.invalid(`invalid network "${net}": berth supports --network bridge, none or host`);
  }
  req.network = net;
  const ports = strs(v.publish).map(parsePublish);
  if (ports.length) {
    if (net !== 'bridge') throw errors.invalid(`-p publishes ports only with --network bridge, not ${net}`);
    req.ports = ports;
  }
  const labels: Record<string, string> = {};
  for (const l of strs(v.label)) {
    const eq = l.indexOf('=');
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }
  if (Object.keys(labels).length) req.labels = labels;
  if (strs(v['cap-add']).length) req.capAdd = strs(v['cap-add']);
  if (strs(v['cap-drop']).length) req.capDrop = strs(v['cap-drop']);
  Object.assign(req, parseSecurityOpts(strs(v['security-opt']), caller.cwd));
  if (strs(v.dns).length) req.dns = { servers: strs(v.dns), searches: [], options: [] };
  if (typeof v['stop-signal'] === 'string') req.stopSignal = v['stop-signal'];
  const namespaces: NonNullable<CreateContainerRequest['namespaces']> = {};
  for (const ns of ['pid', 'ipc', 'uts'] as const) {
    const mode = v[ns];
    if (mode === undefined) continue;
    if (mode !== 'host' && mode !== 'private')
      throw errors.invalid(`invalid --${ns} "${mode}": host or private`);
    namespaces[ns] = mode;
  }
  if (Object.keys(namespaces).length) req.namespaces = namespaces;
  if (v.privileged) req.privileged = true;
  if (v.tty) req.tty = true;
  if (v.interactive) req.stdin = true;
  return req;
}
