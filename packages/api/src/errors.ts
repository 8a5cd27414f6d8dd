/**
 * The one closed set of error codes berth uses on every wire (NATS, gRPC, CLI exit).
 * Names and meanings follow gRPC's canonical codes so the CRI mapping is total and lossless.
 */
export const Code = {
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  FAILED_PRECONDITION: 'FAILED_PRECONDITION',
  UNAVAILABLE: 'UNAVAILABLE',
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  UNIMPLEMENTED: 'UNIMPLEMENTED',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  PERMISSION_DENIED: 'PERMISSION_DENIED',
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  CANCELLED: 'CANCELLED',
  ABORTED: 'ABORTED',
  DATA_LOSS: 'DATA_LOSS',
  INTERNAL: 'INTERNAL',
} as const;
export type Code = (typeof Code)[keyof typeof Code];

/** Numeric codes sent in the NATS Service API error header (HTTP-like, as the Service API suggests). */
export const natsCodeOf: Record<Code, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 410,
  FAILED_PRECONDITION: 412,
  RESOURCE_EXHAUSTED: 429,
  CANCELLED: 499,
  INTERNAL: 500,
  UNIMPLEMENTED: 501,
  DATA_LOSS: 502,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

/** gRPC status numbers (google.rpc.Code) for each berth code. */
export const grpcStatusOf: Record<Code, number> = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** CLI exit status for each code: 1 for most, distinct values where scripts care. */
export const exitCodeOf: Record<Code, number> = {
  INVALID_ARGUMENT: 2,
  NOT_FOUND: 1,
  ALREADY_EXISTS: 1,
  FAILED_PRECONDITION: 1,
  UNAVAILABLE: 1,
  DEADLINE_EXCEEDED: 1,
  UNIMPLEMENTED: 1,
  UNAUTHENTICATED: 1,
  PERMISSION_DENIED: 1,
  RESOURCE_EXHAUSTED: 1,
  CANCELLED: 130,
  ABORTED: 1,
  DATA_LOSS: 1,
  INTERNAL: 1,
};

const codeByNats = new Map<number, Code>(Object.entries(natsCodeOf).map(([c, n]) => [n, c as Code]));
const codeByGrpc = new Map<number, Code>(Object.entries(grpcStatusOf).map(([c, n]) => [n, c as Code]));

/** Maps a NATS Service API numeric error code back to a berth code; unknown numbers become INTERNAL. */
export function codeFromNats(n: number): Code {
  return codeByNats.get(n) ?? Code.INTERNAL;
}

/** Maps a gRPC status number back to a berth code; unknown numbers (and OK) become INTERNAL. */
export function codeFromGrpc(n: number): Code {
  return codeByGrpc.get(n) ?? Code.INTERNAL;
}

/** True when `s` is one of berth's codes. */
export function isCode(s: unknown): s is Code {
  return typeof s === 'string' && Object.hasOwn(Code, s);
}

/** The single error class of berth: a code, a message that names the object, and an optional cause. */
export class BerthError extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BerthError';
    this.code = code;
  }

  /** The form that crosses a wire: never a stack. */
  toWire(): WireError {
    return { code: this.code, message: this.message };
  }
}

/** An error as carried in a reply body. */
export interface WireError {
  code: Code;
  message: string;
}

/** Wraps anything thrown into a BerthError: BerthErrors pass through, the rest become INTERNAL. */
export function toBerthError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  if (err instanceof Error) return new BerthError(Code.INTERNAL, err.message, { cause: err });
  return new BerthError(Code.INTERNAL, String(err));
}

/** Shorthands that keep call sites short and messages consistent. */
export const errors = {
  invalid: (msg: string, cause?: unknown) => new BerthError(Code.INVALID_ARGUMENT, msg, { cause }),
  notFound: (msg: string) => new BerthError(Code.NOT_FOUND, msg),
  exists: (msg: string) => new BerthError(Code.ALREADY_EXISTS, msg),
  precondition: (msg: string) => new BerthError(Code.FAILED_PRECONDITION, msg),
  unavailable: (msg: string, cause?: unknown) => new BerthError(Code.UNAVAILABLE, msg, { cause }),
  internal: (msg: string, cause?: unknown) => new BerthError(Code.INTERNAL, msg, { cause }),
} as const;
