import * as grpc from '@grpc/grpc-js';
import { loadCriDefinition } from '../proto-package.js';

/** A CRI gRPC client (RuntimeService and ImageService) over a unix socket, as crictl would use. */
export interface CriClient {
  runtime: grpc.Client;
  image: grpc.Client;
  /** Calls a unary RPC, e.g. unary(c.runtime, 'Version', {}). */
  unary<T>(client: grpc.Client, method: string, request: unknown): Promise<T>;
  /** Opens a server-streaming RPC and resolves with the status it ends with. */
  streamStatus(client: grpc.Client, method: string, request: unknown): Promise<grpc.StatusObject>;
  /** Reads a server-streaming RPC to its end: the messages, and the status it ended with. */
  stream<T>(
    client: grpc.Client,
    method: string,
    request: unknown,
  ): Promise<{ messages: T[]; status: grpc.StatusObject }>;
  close(): void;
}

type UnaryFn<T> = (
  request: unknown,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, reply: T) => void,
) => void;
type StreamFn = (request: unknown, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

export function criClient(
  socket: string,
  opts: { channel?: grpc.ChannelOptions; deadlineMs?: number } = {},
): CriClient {
  const pkg = grpc.loadPackageDefinition(loadCriDefinition());
  const v1 = (pkg.runtime as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const Runtime = v1.RuntimeService as grpc.ServiceClientConstructor;
  const Image = v1.ImageService as grpc.ServiceClientConstructor;
  const target = `unix:${socket}`;
  const runtime = new Runtime(target, grpc.credentials.createInsecure(), opts.channel);
  const image = new Image(target, grpc.credentials.createInsecure(), opts.channel);
  const deadline = () => new Date(Date.now() + (opts.deadlineMs ?? 10_000));
  return {
    runtime,
    image,
    unary<T>(client: grpc.Client, method: string, request: unknown) {
      const fn = (client as unknown as Record<string, UnaryFn<T>>)[method];
      if (!fn) throw new Error(`no method ${method}`);
      return new Promise<T>((resolve, reject) => {
        fn.call(client, request, { deadline: deadline() }, (err: grpc.ServiceError | null, reply: T) =>
          err ? reject(err) : resolve(reply),
        );
      });
    },
    streamStatus(client: grpc.Client, method: string, request: unknown) {
      const fn = (client as unknown as Record<string, StreamFn>)[method];
      if (!fn) throw new Error(`no method ${method}`);
      const stream = fn.call(client, request, { deadline: deadline() });
      return new Promise<grpc.StatusObject>((resolve) => {
        stream.on('data', () => undefined);
        stream.on('error', () => undefined);
        stream.on('status', resolve);
      });
    },
    stream<T>(client: grpc.Client, method: string, request: unknown) {
      const fn = (client as unknown as Record<string, StreamFn>)[method];
      if (!fn) throw new Error(`no method ${method}`);
      const s = fn.call(client, request, { deadline: deadline() });
      const messages: T[] = [];
      return new Promise<{ messages: T[]; status: grpc.StatusObject }>((resolve) => {
        s.on('data', (m: T) => messages.push(m));
        s.on('error', () => undefined);
        s.on('status', (status) => resolve({ messages, status }));
      });
    },
    close() {
      runtime.close();
      image.close();
    },
  };
}
