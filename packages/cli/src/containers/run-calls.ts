import { BerthError, Code, type CreateContainerRequest } from '@berth/api';
import type { CliContext } from '../context.js';
import { image } from '../images/api.js';
import { nodeError } from '../nodes.js';
import { pullMissing } from './api.js';

/** docker's exit status when the container's command cannot be found. */
export const EXIT_NOT_FOUND = 127;

/**
 * A create (`create-container` or `run-container`), undefined when it failed because the node
 * lacks the image: then the create, made without it, undid itself, and the caller pulls it (as
 * `docker run`). The image is asked for only after a create's NOT_FOUND, to tell a missing image
 * from another missing object; when it is there, as it mostly is, no image get runs at all (it
 * used to run beside the create, ~8 ms of the CLI's and the image-service's CPU per run).
 */
export async function unlessImageMissing<T>(
  ctx: CliContext,
  req: CreateContainerRequest,
  node: string,
  creating: Promise<T>,
): Promise<T | undefined> {
  try {
    return await creating;
  } catch (err) {
    if (!(err instanceof BerthError) || err.code !== Code.NOT_FOUND) throw err;
    const missing = await image(ctx, 'get', { name: req.image }, node).then(
      () => false,
      (e: unknown) => e instanceof BerthError && e.code === Code.NOT_FOUND,
    );
    if (!missing) throw err;
    return undefined;
  }
}

/**
 * Makes a container with `create` (a call of create-container or run-container), pulling its
 * image first when the node lacks it. Undefined when the command was not found in the image: the
 * message is printed and the caller exits with EXIT_NOT_FOUND; other errors propagate, named
 * after the node.
 */
export async function createPulling<T>(
  ctx: CliContext,
  req: CreateContainerRequest,
  node: string,
  create: () => Promise<T>,
): Promise<T | undefined> {
  let made: T | undefined;
  try {
    made = await unlessImageMissing(ctx, req, node, create());
  } catch (err) {
    commandNotFound(nodeError(node, err), ctx);
    return undefined;
  }
  if (made !== undefined) return made;
  await pullMissing(ctx, req.image, node);
  try {
    return await create();
  } catch (err) {
    commandNotFound(nodeError(node, err), ctx);
    return undefined;
  }
}

/**
 * Retries while the task-service is unavailable (restarting under its supervisor), up to 30 s:
 * the container already exited, and `--rm` should not be lost to a restart.
 */
export async function whileUnavailable<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  let delay = 50;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof BerthError) || err.code !== Code.UNAVAILABLE || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
  }
}

/** docker run's 127 for a command missing in the image (printed here); other errors propagate. */
export function commandNotFound(err: unknown, ctx: CliContext): number {
  if (err instanceof BerthError && /executable file not found|no such file or directory/i.test(err.message)) {
    ctx.err.write(`berth: ${err.message}\n`);
    return EXIT_NOT_FOUND;
  }
  throw err;
}
