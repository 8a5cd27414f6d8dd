import type { Duplex, Readable, Writable } from 'node:stream';

/** The kinds of streaming session the server serves, one URL path each (`/<kind>/<token>`). */
export const StreamKind = { EXEC: 'exec', ATTACH: 'attach', PORT_FORWARD: 'portforward' } as const;
export type StreamKind = (typeof StreamKind)[keyof typeof StreamKind];

/** A command to run in a container, as the CRI ExecRequest carries it. */
export interface ExecRequest {
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** An attach to a container's main process, as the CRI AttachRequest carries it. */
export interface AttachRequest {
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** A port-forward into a pod sandbox's network namespace, as the CRI PortForwardRequest carries it. */
export interface PortForwardRequest {
  podSandboxId: string;
  /** Ports a WebSocket client forwards; SPDY clients name the port per stream instead. */
  ports: number[];
}

/** A terminal size sent by the client on the resize stream (kubelet's TerminalSize). */
export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * The client's streams handed to a backend for one exec or attach.
 * Only the streams the request asked for are present. The backend may end `stdout`/`stderr` (as
 * `pipe` does) or leave them open; either way the server sends all that was written before the
 * exit status. `signal` aborts when the client goes away: stop the command's I/O then.
 */
export interface CommandIo {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  /** Terminal resizes in the order the client sent them; ends when the client closes the stream. */
  resize: AsyncIterable<TerminalSize>;
  signal: AbortSignal;
}

/** How a command ended: its exit status (0 = success). */
export interface CommandResult {
  exitCode: number;
}

/**
 * What the streaming server needs from the runtime; the lead implements it over the shim.
 * A rejected promise is reported to the client as an internal error on the error stream.
 */
export interface StreamingBackend {
  /** Runs `req.cmd` in the container, copying the given streams, and resolves with its exit code. */
  exec(req: ExecRequest, io: CommandIo): Promise<CommandResult>;
  /**
   * Attaches the streams to the container's main process until its output ends or the client
   * leaves; its exitCode is always 0 (an attach ends with Success, as the kubelet's server ends one).
   */
  attach(req: AttachRequest, io: CommandIo): Promise<CommandResult>;
  /**
   * Copies bytes both ways between `stream` and `port` on the sandbox's loopback until either end
   * closes. Resolve when done; reject when the port cannot be reached.
   */
  portForward(podSandboxId: string, port: number, stream: Duplex, signal: AbortSignal): Promise<void>;
}

/** Options of createStreamingServer; every field but `backend` has a default. */
export interface StreamingServerOptions {
  backend: StreamingBackend;
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Port to listen on; default 0 (a free port). */
  port?: number;
  /** Host to put in URLs when clients must use another than the bound one (e.g. bound to 0.0.0.0). */
  advertiseHost?: string;
  /** How long a URL's token stays valid; default 60 000 ms, as kubelet and containerd. */
  tokenTtlMs?: number;
  /** At most this many unused tokens at once; default 1000, as kubelet. */
  maxInFlight?: number;
  /** How long a SPDY client has to open the streams it asked for; default 30 000 ms. */
  streamCreationTimeoutMs?: number;
  /** A session with no traffic for this long is closed; default 4 h, as kubelet. */
  idleTimeoutMs?: number;
  /** Clock for token expiry, for tests; default Date.now. */
  now?: () => number;
}
