import { isAbsolute, resolve } from 'node:path';
import {
  BerthError,
  Code,
  ImageApi,
  type InputOf,
  type OpName,
  type OutputOf,
  type PullProgress,
  type RegistryAuth,
} from '@berth/api';
import { call } from '@berth/kit/client';
import { type EventEnvelope, subscribeEvents } from '@berth/kit/events';
import type { CliContext } from '../context.js';
import { nodeError } from '../nodes.js';
import { type ProgressVerbs, ProgressView } from './progress.js';

/**
 * Calls one operation of a node's image-service (this node's unless `node` is given), in the
 * CLI's namespace. A node whose image-service does not answer is named in the error.
 */
export async function image<K extends OpName<typeof ImageApi>>(
  ctx: CliContext,
  op: K,
  payload: InputOf<typeof ImageApi, K>,
  node: string = ctx.config.nodeId,
): Promise<OutputOf<typeof ImageApi, K>> {
  try {
    return await call(await ctx.nats(), ImageApi, op, payload, { node, namespace: ctx.namespace });
  } catch (err) {
    throw node === ctx.config.nodeId ? err : nodeError(node, err);
  }
}

/**
 * Credentials for the registry of `ref` from the docker config.json (or its credential helper),
 * sent with the request as docker does. A bad reference is left to the image-service to refuse; a
 * failing credential helper fails the command, naming the helper.
 */
export async function authFor(ref: string): Promise<RegistryAuth | undefined> {
  // Loaded here, not at the top: the docker config reader brings in child_process (credential
  // helpers), which `berth ps` and every other command that pulls nothing would pay for at start.
  const { credentialsFromDockerConfig, parseReference } = await import('@berth/image-service/docker-config');
  let domain: string;
  try {
    domain = parseReference(ref).domain;
  } catch {
    return undefined;
  }
  return credentialsFromDockerConfig(domain);
}

/** An absolute path for a file the (host-local) image-service reads or writes. */
export function absolute(path: string): string {
  return isAbsolute(path) ? path : resolve(process.cwd(), path);
}

/**
 * The image-service sends a progress event at least every 5 s while a transfer runs; this much
 * silence means the replica doing the work is gone (killed, partitioned), not just slow.
 */
export const SILENCE_MS = 30_000;

/**
 * Runs a transfer with progress: subscribes to its progress topic before sending the request (so
 * no event is missed), renders events as they come, and stops listening when the reply arrives.
 * If the service falls silent for SILENCE_MS the transfer fails with UNAVAILABLE instead of
 * waiting out the request's long timeout.
 */
export async function withProgress<T>(
  ctx: CliContext,
  topic: string,
  quiet: boolean,
  verbs: ProgressVerbs,
  send: () => Promise<T>,
  what: string,
  silenceMs = SILENCE_MS,
): Promise<T> {
  const nc = await ctx.nats();
  const view = new ProgressView(ctx.out, ctx.out.isTTY === true, verbs);
  let last = Date.now();
  const sub = subscribeEvents(nc, topic, (env: EventEnvelope) => {
    last = Date.now();
    if (!quiet) view.update(env.event as PullProgress);
  });
  await nc.flush();
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setInterval(
      () => {
        if (Date.now() - last > silenceMs) {
          reject(
            new BerthError(
              Code.UNAVAILABLE,
              `${what}: no word from the image-service for ${Math.round(silenceMs / 1000)} s; it may have stopped (check 'berth status')`,
            ),
          );
        }
      },
      Math.min(1000, silenceMs / 4),
    );
  });
  try {
    return await Promise.race([send(), silent]);
  } finally {
    clearInterval(timer);
    sub.unsubscribe();
  }
}
