import type { Readable, Writable } from 'node:stream';
import {
  decodeResizes,
  exitCodeStatus,
  internalErrorStatus,
  type MetaStatus,
  successStatus,
} from './status.js';
import type { AttachRequest, CommandIo, ExecRequest, StreamingBackend } from './types.js';

/** The remote-command subprotocols, newest first, as kubelet lists them. */
export const RemoteCommandProtocol = {
  V5: 'v5.channel.k8s.io',
  V4: 'v4.channel.k8s.io',
  V3: 'v3.channel.k8s.io',
  V2: 'v2.channel.k8s.io',
  V1: 'channel.k8s.io',
} as const;

/** SPDY X-Stream-Protocol-Version values served for exec and attach (v5 behaves as v4 over SPDY). */
export const SPDY_COMMAND_PROTOCOLS: readonly string[] = Object.values(RemoteCommandProtocol);

/** True if the protocol reports the end status as JSON (v4 and later). */
export function jsonStatus(protocol: string): boolean {
  return protocol === RemoteCommandProtocol.V4 || protocol.startsWith('v4.') || protocol.startsWith('v5.');
}

/**
 * One exec or attach session as the transport (SPDY or WebSocket) delivers it: the client's
 * streams, and how to report the end status and close.
 */
export interface CommandSession {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  resize?: Readable;
  signal: AbortSignal;
  /** Writes the status on the error stream in the protocol's format, then closes the session. */
  finish(status: MetaStatus): Promise<void>;
}

/** A command session's request: which RPC and its cached request. */
export type CommandRequest =
  | { kind: 'exec'; request: ExecRequest }
  | { kind: 'attach'; request: AttachRequest };

/**
 * Runs an exec or attach on the backend over a session and reports how it ended: Success, a
 * NonZeroExitCode failure carrying the exit code, or an InternalError if the backend failed.
 */
export async function runCommand(
  backend: StreamingBackend,
  command: CommandRequest,
  session: CommandSession,
): Promise<void> {
  const io: CommandIo = {
    resize: decodeResizes(session.resize),
    signal: session.signal,
    ...(session.stdin ? { stdin: session.stdin } : {}),
    ...(session.stdout ? { stdout: session.stdout } : {}),
    ...(session.stderr ? { stderr: session.stderr } : {}),
  };
  let status: MetaStatus;
  try {
    const { exitCode } =
      command.kind === 'exec'
        ? await backend.exec(command.request, io)
        : await backend.attach(command.request, io);
    status = exitCode === 0 ? successStatus() : exitCodeStatus(exitCode);
  } catch (err) {
    const what = command.kind === 'exec' ? 'executing command in container' : 'attaching to container';
    status = internalErrorStatus(`error ${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Output written before the command ended must reach the client before the status does.
  await Promise.all([flushed(session.stdout), flushed(session.stderr)]);
  await session.finish(status);
}

/** Ends a Writable (unless the backend did) and waits until all it was given has been sent. */
export function flushed(w: Writable | undefined): Promise<void> {
  if (!w || w.writableFinished || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    w.once('finish', resolve);
    w.once('close', resolve);
    w.once('error', () => resolve());
    if (!w.writableEnded) w.end();
  });
}
