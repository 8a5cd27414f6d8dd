import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errors } from '@berth/api';
import {
  configKeyOf,
  dockerConfigPath,
  helperErase,
  helperFor,
  helperStore,
} from '@berth/image-service/docker-config';
import type { CliContext } from '../context.js';
import { image } from './api.js';

type DockerConfig = { auths?: Record<string, Record<string, unknown>> } & Record<string, unknown>;

async function readConfig(file: string): Promise<DockerConfig> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as DockerConfig;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw errors.invalid(`${file} is not valid JSON; fix or remove it`);
  }
}

/** Writes config.json atomically with mode 0600 (it holds credentials), keeping other keys. */
async function writeConfig(file: string, cfg: DockerConfig): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(file), `.config.json.${randomUUID()}`);
  await writeFile(tmp, `${JSON.stringify(cfg, null, '\t')}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/** Normalizes a server argument to a registry host (`https://index.docker.io/v1/` -> docker.io). */
export function serverHost(server: string | undefined): string {
  if (!server) return 'docker.io';
  const h = server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  return h === 'index.docker.io' || h === 'registry-1.docker.io' ? 'docker.io' : h;
}

/**
 * `berth login`: the node's image-service checks the credentials against the registry (with its
 * mirrors and insecure-registry rules, as pulls will reach it), then they are stored in config.json.
 */
export async function login(
  ctx: CliContext,
  server: string | undefined,
  username: string,
  password: string,
): Promise<void> {
  const host = serverHost(server);
  await image(ctx, 'login', { registry: host, auth: { username, password } });
  const file = dockerConfigPath();
  const cfg = await readConfig(file);
  // As docker: a credential helper for the registry keeps the secret; config.json only names it.
  const helper = helperFor(cfg, host);
  if (helper) {
    await helperStore(helper, configKeyOf(host), username, password);
    return;
  }
  cfg.auths = {
    ...(cfg.auths ?? {}),
    [configKeyOf(host)]: { auth: Buffer.from(`${username}:${password}`).toString('base64') },
  };
  await writeConfig(file, cfg);
}

/** `berth logout`: removes the stored credentials of a registry; false if there were none. */
export async function logout(server: string | undefined): Promise<boolean> {
  const host = serverHost(server);
  const file = dockerConfigPath();
  const cfg = await readConfig(file);
  const key = configKeyOf(host);
  const helper = helperFor(cfg, host);
  if (helper) {
    await helperErase(helper, key);
    return true;
  }
  if (!cfg.auths?.[key]) return false;
  delete cfg.auths[key];
  await writeConfig(file, cfg);
  return true;
}
