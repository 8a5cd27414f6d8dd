import type { Readable } from 'node:stream';
import type { TerminalSize } from './types.js';

/** The subset of Kubernetes metav1.Status that remote-command error streams carry. */
export interface MetaStatus {
  metadata: Record<string, never>;
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

/** The status of a command that exited 0. */
export function successStatus(): MetaStatus {
  return { metadata: {}, status: 'Success' };
}

/** The status of a command that exited non-zero, as kubelet's remotecommand v4 reports it. */
export function exitCodeStatus(exitCode: number): MetaStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit status ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

/** The status of a command the runtime failed to run (kubelet's InternalError). */
export function internalErrorStatus(message: string): MetaStatus {
  return {
    metadata: {},
    status: 'Failure',
    message: `Internal error occurred: ${message}`,
    reason: 'InternalError',
    details: { causes: [{ message }] },
    code: 500,
  };
}

/**
 * The bytes to write on the error stream: the JSON Status for protocol v4 and later; for older
 * versions only a failure's message as text, and nothing on success (as kubelet does).
 */
export function encodeStatus(status: MetaStatus, json: boolean): Buffer | undefined {
  if (json) return Buffer.from(JSON.stringify(status));
  if (status.status === 'Success') return undefined;
  return Buffer.from(status.message ?? 'command failed');
}

/**
 * Decodes the resize stream, a sequence of JSON objects `{"Width":80,"Height":24}` (Go's encoder
 * separates them with newlines; nothing else is assumed), into terminal sizes. A value that is not
 * such an object ends the sequence, as kubelet stops reading at its first decode error.
 */
export async function* decodeResizes(source: Readable | undefined): AsyncGenerator<TerminalSize> {
  if (!source) return;
  let pending = '';
  for await (const chunk of source) {
    pending += (chunk as Buffer).toString('utf8');
    for (;;) {
      const end = objectEnd(pending);
      if (end < 0) break;
      const text = pending.slice(0, end);
      pending = pending.slice(end);
      const size = toSize(text);
      if (!size) return;
      yield size;
    }
    if (pending.length > 4096) return; // no object is that long: not a resize stream
  }
}

/** Index just past the first complete top-level JSON object in `s`, or -1. */
function objectEnd(s: string): number {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

function toSize(text: string): TerminalSize | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  // Go decodes field names case-insensitively; clients send Width/Height.
  const fields = Object.fromEntries(Object.entries(value).map(([k, v]) => [k.toLowerCase(), v]));
  const width = fields.width ?? 0;
  const height = fields.height ?? 0;
  if (!isUint16(width) || !isUint16(height)) return undefined;
  return { width, height };
}

function isUint16(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}
