import { randomBytes } from 'node:crypto';
import { BerthError, Code, toBerthError } from '@berth/api';
import type { TaskPort } from './ports.js';

// The gateway chooses the ids of the pods and containers it creates, as containerd's CRI does (64
// hex characters): CNI ADD and the cgroup path name a pod's or container's id before its record is
// made. What follows from choosing them, shared by RunPodSandbox and CreateContainer.

/** A new id for a pod sandbox or a container. */
export function chooseCriId(): string {
  return randomBytes(32).toString('hex');
}

/**
 * Whether a create that failed with `err` may still have made its record (a reply lost, a
 * timeout): not when the task-service refused it (ALREADY_EXISTS, INVALID_ARGUMENT), having made
 * nothing, and its id may then be another container's.
 */
export function mayHaveMade(err: unknown): boolean {
  const code = toBerthError(err).code;
  return code !== Code.ALREADY_EXISTS && code !== Code.INVALID_ARGUMENT;
}

/**
 * FAILED_PRECONDITION for a task-service from before caller-chosen ids, which made `what` under
 * an id of its own (`made`) instead of the gateway's (`chosen`).
 */
export function foreignIdError(what: string, made: string, chosen: string): BerthError {
  return new BerthError(
    Code.FAILED_PRECONDITION,
    `the task-service made ${what} ${made.slice(0, 12)} under its own id, not the gateway's ${chosen.slice(0, 12)}: upgrade every task-service before the cri-gateway`,
  );
}

/**
 * Removes the record a failed create made, or may have made, under `id`; `known`: it is known
 * to exist, so even NOT_FOUND is worth a warning (otherwise an absent record is no news). A
 * failure is `warn`ed, never thrown: the create's own error is what the caller answers.
 */
export async function removeMade(
  tasks: TaskPort,
  id: string,
  known: boolean,
  warn: (err: unknown, id: string) => void,
): Promise<void> {
  await tasks.deleteContainer(id, true).catch((err: unknown) => {
    if (known || toBerthError(err).code !== Code.NOT_FOUND) warn(err, id);
  });
}
