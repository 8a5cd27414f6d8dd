import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';

/** Directory of a container's generated files (hosts, resolv.conf, hostname, log) on its node. */
export function containerDir(stateRoot: string, ns: string, id: string): string {
  return join(hostLayout({ stateRoot, runRoot: '/' }).containers, ns, id);
}

/** Writes a file by temp name + rename, so a crash never leaves a half-written file. */
export async function writeAtomic(path: string, content: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
}

/** Writes the container's generated files into its directory. */
export async function writeContainerFiles(
  dir: string,
  files: { hosts: string; resolvConf: string; hostname: string },
): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o711 });
  await writeAtomic(join(dir, 'hosts'), files.hosts);
  await writeAtomic(join(dir, 'resolv.conf'), files.resolvConf);
  await writeAtomic(join(dir, 'hostname'), `${files.hostname}\n`);
}

/** Removes a container's directory; absent is fine. */
export async function removeContainerDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** The host's file, or "" when it cannot be read. */
export async function hostFile(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}
