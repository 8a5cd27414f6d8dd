import { Duplex, PassThrough, type Readable } from 'node:stream';
import type { SpdySession } from './spdy-session.js';
import type { SpdyStream } from './spdy-stream.js';
import type { StreamingBackend } from './types.js';
import type { WebSocketConnection } from './websocket.js';
import { isBase64Protocol, readChannel, sendOnChannel } from './ws-command.js';

/** SPDY X-Stream-Protocol-Version values served for port-forward. */
export const SPDY_PORT_FORWARD_PROTOCOLS: readonly string[] = ['portforward.k8s.io'];
/** WebSocket subprotocols served for port-forward; '' (none offered) is binary. */
export const WS_PORT_FORWARD_PROTOCOLS: readonly string[] = [
  'v4.channel.k8s.io',
  'v4.base64.channel.k8s.io',
  '',
];

/** Parses a port as kubelet does: a decimal in 1..65535. */
export function parsePort(text: string | undefined): number | undefined {
  if (!text || !/^[0-9]{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65_535 ? port : undefined;
}

/**
 * A Duplex whose reads come from `source` and whose writes go to `write`; `end` runs at final.
 * A failed write (the client left) destroys it without an error event, which nobody might handle.
 */
function bridge(source: Readable, write: (b: Buffer) => Promise<void>, end: () => Promise<void>): Duplex {
  const duplex: Duplex = new Duplex({
    read: () => {
      source.resume();
    },
    write: (chunk: Buffer, _encoding, callback) => {
      write(chunk).then(
        () => callback(),
        () => {
          callback();
          duplex.destroy();
        },
      );
    },
    final: (callback) => {
      end().then(
        () => callback(),
        () => callback(),
      );
    },
  });
  source.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) source.pause();
  });
  source.once('end', () => duplex.push(null));
  return duplex;
}

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: NodeJS.Timeout;
}

/**
 * Serves port-forward over one SPDY connection: the client opens a data and an error stream per
 * forwarded connection, both with headers `port` and `requestID`; each complete pair is handed to
 * the backend. The connection lasts until the client closes it.
 */
export function servePortForwardSpdy(
  session: SpdySession,
  backend: StreamingBackend,
  podSandboxId: string,
  pairTimeoutMs: number,
): (stream: SpdyStream) => string | undefined {
  const pairs = new Map<string, Pair>();
  const run = async (id: string, data: SpdyStream, error: SpdyStream) => {
    const port = parsePort(data.header('port')) ?? 0;
    const duplex = bridge(
      data.readable,
      (b) => data.write(b),
      () => data.end(),
    );
    try {
      await backend.portForward(podSandboxId, port, duplex, session.signal);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await error
        .write(Buffer.from(`error forwarding port ${port} to pod ${podSandboxId}: ${message}`))
        .catch(() => undefined);
    }
    pairs.delete(id);
    await Promise.all([data.end(), error.end()]).catch(() => undefined);
  };
  return (stream) => {
    if (parsePort(stream.header('port')) === undefined) return `"port" header must be a port in 1..65535`;
    const type = stream.header('streamtype');
    if (type !== 'data' && type !== 'error') return `invalid stream type "${type ?? ''}"`;
    // Clients too old to send requestID pair an error stream N with the data stream N+2.
    const id = stream.header('requestid') ?? String(type === 'error' ? stream.id : stream.id - 2);
    let pair = pairs.get(id);
    if (!pair) {
      const timer = setTimeout(() => {
        pairs.delete(id);
        const msg = Buffer.from(`timed out waiting for the data and error streams of request ${id}`);
        pair?.error?.write(msg).then(
          () => pair?.error?.end(),
          () => undefined,
        );
        pair?.data?.reset();
      }, pairTimeoutMs);
      timer.unref();
      pair = { timer };
      pairs.set(id, pair);
    }
    if (pair[type]) return `${type} stream of request ${id} already open`;
    pair[type] = stream;
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      void run(id, pair.data, pair.error);
    }
    return undefined;
  };
}

/**
 * Serves port-forward over a WebSocket: channel 2i carries port i's data both ways and 2i+1 its
 * errors; each channel first carries the port as 16-bit little endian, as kubelet writes it.
 */
export async function servePortForwardWs(
  ws: WebSocketConnection,
  protocol: string,
  backend: StreamingBackend,
  podSandboxId: string,
  ports: number[],
): Promise<void> {
  const base64 = isBase64Protocol(protocol);
  const inputs = ports.map(() => new PassThrough());
  ws.on('message', (message: Buffer) => {
    const parsed = readChannel(message, base64);
    if (!parsed || parsed.channel % 2 !== 0) return;
    const input = inputs[parsed.channel / 2];
    if (!input || input.writableEnded) return;
    if (!input.write(parsed.data)) {
      ws.pause();
      input.once('drain', () => ws.resume());
    }
  });
  void ws.closed.then(() => {
    for (const input of inputs) if (!input.writableEnded) input.end();
  });
  await Promise.all(
    ports.map(async (port, i) => {
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16LE(port, 0);
      await sendOnChannel(ws, base64, 2 * i, prefix);
      await sendOnChannel(ws, base64, 2 * i + 1, prefix);
      const input = inputs[i] as PassThrough;
      const duplex = bridge(
        input,
        (b) => sendOnChannel(ws, base64, 2 * i, b),
        async () => undefined,
      );
      try {
        await backend.portForward(podSandboxId, port, duplex, ws.signal);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        const text = `error forwarding port ${port} to pod ${podSandboxId}: ${message}`;
        await sendOnChannel(ws, base64, 2 * i + 1, Buffer.from(text)).catch(() => undefined);
      }
    }),
  ).catch(() => undefined);
  ws.close(1000);
}
