import { PassThrough, Writable } from 'node:stream';
import { type CommandSession, jsonStatus } from './remote-command.js';
import type { CommandStreams } from './spdy-command.js';
import { encodeStatus, type MetaStatus } from './status.js';
import type { WebSocketConnection } from './websocket.js';

/** Channel numbers of the channel.k8s.io WebSocket protocols (first byte of each message). */
export const Channel = { STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4, CLOSE: 255 } as const;

/** WebSocket subprotocols served for exec/attach; '' (none offered) behaves as channel.k8s.io. */
export const WS_COMMAND_PROTOCOLS: readonly string[] = [
  'v5.channel.k8s.io',
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  'channel.k8s.io',
  'base64.channel.k8s.io',
  '',
];

/** True for the base64 variants, whose messages are text: a channel digit, then base64. */
export function isBase64Protocol(protocol: string): boolean {
  return protocol.includes('base64.');
}

/** Writes `data` on a channel in the negotiated encoding. */
export function sendOnChannel(
  ws: WebSocketConnection,
  base64: boolean,
  channel: number,
  data: Buffer,
): Promise<void> {
  if (base64) return ws.send(Buffer.from(String.fromCharCode(48 + channel) + data.toString('base64')), false);
  return ws.send(Buffer.concat([Buffer.from([channel]), data]));
}

/** Splits a client message into its channel and payload; undefined for an empty or bad message. */
export function readChannel(message: Buffer, base64: boolean): { channel: number; data: Buffer } | undefined {
  if (message.length === 0) return undefined;
  const first = message[0] ?? 0;
  if (!base64) return { channel: first, data: message.subarray(1) };
  const channel = first - 48;
  return { channel, data: Buffer.from(message.subarray(1).toString('latin1'), 'base64') };
}

/**
 * Presents a channel.k8s.io WebSocket connection as a CommandSession. v5 adds the CLOSE signal
 * ([255, channel]) by which a client ends its stdin; older versions end stdin only by closing.
 */
export function wsCommandSession(
  ws: WebSocketConnection,
  protocol: string,
  want: CommandStreams,
): CommandSession {
  const base64 = isBase64Protocol(protocol);
  const v5 = protocol.startsWith('v5.');
  const stdin = want.stdin ? new PassThrough() : undefined;
  const resize = new PassThrough();
  // Destroyed, not errored, when the client is gone (see SpdyStream.writable).
  const channelWriter = (channel: number) => {
    const w: Writable = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        sendOnChannel(ws, base64, channel, chunk).then(
          () => callback(),
          () => {
            callback();
            w.destroy();
          },
        );
      },
    });
    return w;
  };
  ws.on('message', (message: Buffer) => {
    if (v5 && message.length === 2 && message[0] === Channel.CLOSE) {
      if (message[1] === Channel.STDIN) stdin?.end();
      if (message[1] === Channel.RESIZE) resize.end();
      return;
    }
    const parsed = readChannel(message, base64);
    if (!parsed) return;
    const target =
      parsed.channel === Channel.STDIN ? stdin : parsed.channel === Channel.RESIZE ? resize : undefined;
    if (!target || target.writableEnded) return;
    // A client that sends faster than the command reads waits on TCP, not on our memory.
    if (!target.write(parsed.data)) {
      ws.pause();
      target.once('drain', () => ws.resume());
    }
  });
  void ws.closed.then(() => {
    if (stdin && !stdin.writableEnded) stdin.end();
    if (!resize.writableEnded) resize.end();
  });
  // kubelet sends an empty message on the lowest writable channel to tell the client it is ready.
  const first = want.stdout ? Channel.STDOUT : want.stderr ? Channel.STDERR : Channel.ERROR;
  void sendOnChannel(ws, base64, first, Buffer.alloc(0)).catch(() => undefined);
  return {
    signal: ws.signal,
    resize,
    ...(stdin ? { stdin } : {}),
    ...(want.stdout ? { stdout: channelWriter(Channel.STDOUT) } : {}),
    ...(want.stderr ? { stderr: channelWriter(Channel.STDERR) } : {}),
    async finish(status: MetaStatus): Promise<void> {
      const bytes = encodeStatus(status, jsonStatus(protocol));
      if (bytes) await sendOnChannel(ws, base64, Channel.ERROR, bytes).catch(() => undefined);
      ws.close(1000);
    },
  };
}
