// Which node a command acts on, and errors that name a node that does not answer. Light on
// purpose (no service clients): `ps` and the image commands load it on every run.
import { BerthError, Code } from '@berth/api/errors';
import { NODE_ID_PATTERN } from '@berth/api/subjects';

/** The node a `--node NAME` flag names (checked), else `self` (this CLI's node). */
export function nodeFlag(self: string, value: unknown): string {
  if (value === undefined) return self;
  if (typeof value !== 'string' || !NODE_ID_PATTERN.test(value)) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `--node ${JSON.stringify(value)}: a node id is 1-64 letters, digits, "_" or "-"`,
    );
  }
  return value;
}

/**
 * An UNAVAILABLE from a node's host-local service (shim, image-service), reworded to name the
 * node: on a cluster, "no responder" mostly means that node is down. Other errors pass through.
 */
export function nodeError(node: string, err: unknown): unknown {
  if (err instanceof BerthError && err.code === Code.UNAVAILABLE && !err.message.includes(`node "${node}"`)) {
    return new BerthError(Code.UNAVAILABLE, `node "${node}" does not answer (is it down?): ${err.message}`, {
      cause: err,
    });
  }
  return err;
}

/** True when `node` is not `self` (this CLI's node): the container's files are not on this disk. */
export function onOtherNode(self: string, node: string): boolean {
  return node !== self;
}
