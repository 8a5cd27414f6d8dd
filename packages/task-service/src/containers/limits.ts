import { CONTAINER_RECORD_MAX_BYTES, type ContainerInfo, errors } from '@berth/api';

/** Size of a value as the JSON the store keeps and a reply carries, in bytes. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}

/**
 * Refuses a container record (or the request it is made from) larger than
 * CONTAINER_RECORD_MAX_BYTES with INVALID_ARGUMENT naming the limit and the actual size: a
 * record is sent back whole by get-container and list-containers, and one NATS cannot carry
 * would break every listing of its namespace.
 */
export function checkRecordSize(what: string, value: unknown): void {
  const size = jsonBytes(value);
  if (size <= CONTAINER_RECORD_MAX_BYTES) return;
  throw errors.invalid(
    `${what} is ${size} bytes, over the limit of ${CONTAINER_RECORD_MAX_BYTES} bytes ` +
      `(${CONTAINER_RECORD_MAX_BYTES / 1024} KiB) of a container record: ` +
      'shorten its command, environment, labels, annotations or mounts',
  );
}

/** Room for the task and status beside a record of the largest size allowed. */
const INFO_SLACK_BYTES = 16 * 1024;

/**
 * A container with its task as a reply can carry it: unchanged, unless its record is over the
 * limit (stored before create enforced it), when its spec and config are left out and named in
 * `omitted`, so one such record cannot break every listing of its namespace.
 */
export function replyable(i: ContainerInfo): ContainerInfo {
  if (jsonBytes(i) <= CONTAINER_RECORD_MAX_BYTES + INFO_SLACK_BYTES) return i;
  const container = { ...i.container, spec: {}, config: { image: i.container.config.image } };
  return { ...i, container, omitted: ['spec', 'config'] };
}
