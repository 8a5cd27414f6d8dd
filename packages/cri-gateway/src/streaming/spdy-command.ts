import { type CommandSession, jsonStatus, RemoteCommandProtocol } from './remote-command.js';
import type { SpdySession } from './spdy-session.js';
import type { SpdyStream } from './spdy-stream.js';
import { encodeStatus, type MetaStatus } from './status.js';

/** The stream types a remote-command client opens, named by its `streamType` header. */
const STREAM_TYPES = ['error', 'stdin', 'stdout', 'stderr', 'resize'] as const;
/** A remote-command stream type. */
export type StreamType = (typeof STREAM_TYPES)[number];

/** What the client asked for in the cached request. */
export interface CommandStreams {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/**
 * Waits for the streams an exec/attach client must open over SPDY (error, plus each requested
 * std stream, plus resize for a tty on v3 and later), then presents them as a CommandSession.
 * Rejects if they do not all arrive within `timeoutMs` or the connection drops first.
 */
export function spdyCommandSession(
  session: SpdySession,
  protocol: string,
  want: CommandStreams,
  timeoutMs: number,
  streams: Map<StreamType, SpdyStream>,
): Promise<CommandSession> {
  const resizes = want.tty && protocol !== RemoteCommandProtocol.V2 && protocol !== RemoteCommandProtocol.V1;
  const expected: StreamType[] = ['error'];
  if (want.stdin) expected.push('stdin');
  if (want.stdout) expected.push('stdout');
  if (want.stderr) expected.push('stderr');
  if (resizes) expected.push('resize');

  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error(`timed out waiting for client to create streams [${expected.join(', ')}]`)),
      timeoutMs,
    );
    const check = () => {
      if (expected.every((t) => streams.has(t))) done();
    };
    const onClose = () => done(new Error('connection closed before the client created its streams'));
    const done = (err?: Error) => {
      clearTimeout(timer);
      session.off('stream', check);
      session.signal.removeEventListener('abort', onClose);
      if (err) return reject(err);
      resolve(buildSession(session, protocol, streams));
    };
    session.on('stream', check);
    session.signal.addEventListener('abort', onClose);
    check();
  });
}

/** The acceptor for a remote-command connection: known stream types, each once. */
export function acceptCommandStream(streams: Map<StreamType, SpdyStream>) {
  return (stream: SpdyStream): string | undefined => {
    const type = stream.header('streamtype');
    if (!type || !(STREAM_TYPES as readonly string[]).includes(type))
      return `unexpected stream type "${type ?? ''}"`;
    if (streams.has(type as StreamType)) return `duplicate ${type} stream`;
    streams.set(type as StreamType, stream);
    return undefined;
  };
}

function buildSession(
  session: SpdySession,
  protocol: string,
  streams: Map<StreamType, SpdyStream>,
): CommandSession {
  const error = streams.get('error');
  const stdin = streams.get('stdin');
  const stdout = streams.get('stdout');
  const stderr = streams.get('stderr');
  const resize = streams.get('resize');
  return {
    signal: session.signal,
    ...(stdin ? { stdin: stdin.readable } : {}),
    ...(stdout ? { stdout: stdout.writable() } : {}),
    ...(stderr ? { stderr: stderr.writable() } : {}),
    ...(resize ? { resize: resize.readable } : {}),
    async finish(status: MetaStatus): Promise<void> {
      const bytes = encodeStatus(status, jsonStatus(protocol));
      try {
        if (error && bytes) await error.write(bytes);
        // Half-close what we send on; the client reads each to EOF before it reads the status.
        await Promise.all([...streams.values()].map((s) => s.end()));
      } catch {
        // The client went away; there is nobody left to tell.
      }
      await session.goAway();
    },
  };
}
