import { CONTAINER_RECORD_MAX_BYTES, errors } from '@berth/api';

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
