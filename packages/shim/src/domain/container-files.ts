import { mkdir, readFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import {
  BerthError,
  Code,
  SHIM_FILE_SOURCE,
  SHIM_SHM_SOURCE,
  type ShimContainerFiles,
  ShimFileName,
} from '@berth/api';
import type { HostLayout } from '@berth/kit';
import { writeAtomic } from './files.js';

/**
 * Directory of a container's generated files and kept log on this node (docs/layout.md:
 * containers/<ns>/<id>/). It outlives each task: a restarted container keeps its log.
 */
export function containerFilesDir(layout: HostLayout, ns: string, id: string): string {
  return join(layout.containers, ns, id);
}

/** /etc/hosts of a container with its own network namespace. */
export function privateHosts(hostname: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    `127.0.1.1\t${hostname}`,
    '',
  ].join('\n');
}

/**
 * The node's resolv.conf made usable in a separate network namespace: loopback nameservers (a
 * local resolver on the node) are unreachable there, so they are dropped, as docker does.
 */
export function filterResolvConf(text: string, keepLoopback: boolean): string {
  if (keepLoopback) return text;
  return text
    .split('\n')
    .filter((l) => !/^\s*nameserver\s+(127\.|::1\b)/.test(l))
    .join('\n');
}

/** A file of the node, or "" when it cannot be read (a node without /etc/hosts still runs). */
async function nodeFile(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}

type Obj = Record<string, unknown>;

/**
 * Writes a container's hosts, resolv.conf and hostname under this node's state root and points
 * the spec's marked mounts (SHIM_FILE_SOURCE) at them; sets spec.hostname to the one written
 * (only in a UTS namespace of the container's own: none in the node's or one it joins).
 * Returns the directory. A marked mount without `files`, or an unknown marker, is INVALID_ARGUMENT:
 * runc would otherwise fail on a source that names nothing.
 */
export async function writeContainerFiles(
  layout: HostLayout,
  spec: Obj,
  opts: { ns: string; id: string; files: ShimContainerFiles | undefined },
): Promise<string | undefined> {
  const mounts = Array.isArray(spec.mounts) ? (spec.mounts as Obj[]) : [];
  // The shareable /dev/shm is no file: container-shm.ts makes it.
  const marked = mounts.filter(
    (m) =>
      typeof m.source === 'string' && m.source.startsWith(SHIM_FILE_SOURCE) && m.source !== SHIM_SHM_SOURCE,
  );
  const { files } = opts;
  if (!files) {
    if (marked.length) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `task "${opts.id}": mount "${String(marked[0]?.source)}" needs the request's files`,
      );
    }
    return undefined;
  }
  const dir = containerFilesDir(layout, opts.ns, opts.id);
  const host = files.network === 'host';
  const hostname = files.hostname ?? osHostname();
  const content: Record<ShimFileName, string> = {
    hosts: host ? await nodeFile('/etc/hosts') : privateHosts(hostname),
    'resolv.conf': files.resolvConf ?? filterResolvConf(await nodeFile('/etc/resolv.conf'), host),
    hostname: `${hostname}\n`,
  };
  const names = new Set<string>(Object.values(ShimFileName));
  for (const m of marked) {
    const name = (m.source as string).slice(SHIM_FILE_SOURCE.length);
    if (!names.has(name)) {
      throw new BerthError(
        Code.INVALID_ARGUMENT,
        `task "${opts.id}": unknown file mount "${String(m.source)}"`,
      );
    }
    m.source = join(dir, name);
  }
  await mkdir(dir, { recursive: true, mode: 0o711 });
  // Readable by the container's user (it may not be root); nothing secret in them.
  // Three files, each its own temp name and rename: written at once rather than one after another.
  await Promise.all(Object.entries(content).map(([name, text]) => writeAtomic(join(dir, name), text, 0o644)));
  // Set only in a UTS namespace of its own: in the node's runc refuses to, and one it joins has
  // its owner's name already (as generate.ts leaves it in the task-service).
  if (ownsUts(spec)) spec.hostname = hostname;
  else delete spec.hostname;
  // A name left to this node (the host network's) is HOSTNAME too, unless the image or the
  // request set one (the task-service leaves it out of the env it builds: see generate.ts).
  if (files.hostname === undefined) giveHostnameEnv(spec, hostname);
  return dir;
}

/** Puts HOSTNAME=<hostname> first in the process's env when no entry names HOSTNAME. */
function giveHostnameEnv(spec: Obj, hostname: string): void {
  const process = spec.process as Obj | undefined;
  if (!process) return;
  const env = Array.isArray(process.env) ? (process.env as string[]) : [];
  if (env.some((e) => e.startsWith('HOSTNAME='))) return;
  process.env = [`HOSTNAME=${hostname}`, ...env];
}

/** True when the spec gives the container a new UTS namespace (not one it joins, not the node's). */
function ownsUts(spec: Obj): boolean {
  const linux = spec.linux as Obj | undefined;
  const namespaces = Array.isArray(linux?.namespaces) ? (linux.namespaces as Obj[]) : [];
  return namespaces.some((n) => n.type === 'uts' && n.path === undefined);
}
