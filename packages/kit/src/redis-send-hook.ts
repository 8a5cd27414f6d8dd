import type { Redis } from 'ioredis';

/** What the stages read of an ioredis Command (its class is not exported as a type we can use). */
export interface SentCommand {
  name: string;
  args: unknown[];
  promise: Promise<unknown>;
  getKeys(): (string | Buffer)[];
  toWritable(socket: object): string | Buffer;
}

type SendCommand = Redis['sendCommand'];
type Stream = Parameters<SendCommand>[1];

/** One command on its way through a client's sendCommand, as each stage sees it. */
export interface SendCall {
  command: SentCommand;
  /** The stream ioredis passes along: a pipeline's for each command of one `exec()`. */
  stream: Stream;
  /** The command is one of a pipeline's (or MULTI...EXEC's) `exec()`. */
  pipelined: boolean;
  /**
   * ioredis sends the command again: what waited in its queues is resent through sendCommand
   * after a reconnect, and a stage must not count it (or start its work) twice.
   */
  resent: boolean;
}

/**
 * One stage of a client's command sending: it sees the command before the stages registered
 * before it, calls `next()` to pass it on, and returns what its caller gets (usually next's).
 */
export type SendStage = (call: SendCall, next: () => unknown) => unknown;

/** Sends a command through the stages registered before one stage, then to the server. */
export type SendBelow = (command: SentCommand, stream?: Stream) => Promise<unknown>;

interface Hook {
  original: SendCommand;
  stages: SendStage[];
  sent: WeakSet<object>;
}

const hooks = new WeakMap<Redis, Hook>();

function run(h: Hook, i: number, call: SendCall): unknown {
  const stage = h.stages[i];
  if (!stage) return h.original(call.command as never, call.stream);
  return stage(call, () => run(h, i - 1, call));
}

const isPipelined = (stream: Stream) => (stream as { isPipeline?: boolean } | undefined)?.isPipeline === true;

/** The one wrapper of a client's sendCommand, made on the first stage registered for it. */
function hookOf(redis: Redis): Hook {
  const known = hooks.get(redis);
  if (known) return known;
  const h: Hook = { original: redis.sendCommand.bind(redis), stages: [], sent: new WeakSet() };
  hooks.set(redis, h);
  // ioredis has no hook around a command; every command, in a pipeline or not, passes here.
  redis.sendCommand = ((command: Parameters<SendCommand>[0], stream?: Stream) => {
    const resent = h.sent.has(command);
    h.sent.add(command);
    const call = {
      command: command as unknown as SentCommand,
      stream,
      pipelined: isPipelined(stream),
      resent,
    };
    return run(h, h.stages.length - 1, call);
  }) as SendCommand;
  return h;
}

/**
 * Adds a stage to every command a Redis client sends (metrics, db spans, replica
 * acknowledgements). The client's sendCommand is wrapped once, whatever the number of stages;
 * the stage added last sees a command first, as if each had wrapped the one before. Returns the
 * way for the stage to send a command of its own (a WAIT behind a write) through only the stages
 * below it, so the stages above neither see it nor count it.
 */
export function onSendCommand(redis: Redis, stage: SendStage): SendBelow {
  const h = hookOf(redis);
  const below = h.stages.length - 1;
  h.stages.push(stage);
  return (command, stream) => {
    h.sent.add(command);
    return run(h, below, {
      command,
      stream,
      pipelined: isPipelined(stream),
      resent: false,
    }) as Promise<unknown>;
  };
}
