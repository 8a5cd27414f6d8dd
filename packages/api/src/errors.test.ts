import { describe, expect, it } from 'vitest';
import {
  BerthError,
  Code,
  codeFromGrpc,
  codeFromNats,
  exitCodeOf,
  grpcStatusOf,
  isCode,
  natsCodeOf,
  toBerthError,
} from './errors.js';

const codes = Object.values(Code);

describe('error code tables', () => {
  it('cover every code (total)', () => {
    for (const table of [natsCodeOf, grpcStatusOf, exitCodeOf]) {
      expect(Object.keys(table).sort()).toEqual([...codes].sort());
    }
    expect(Object.keys(Code)).toEqual(codes);
  });

  it('map Code -> NATS number -> Code without loss (invertible)', () => {
    expect(new Set(Object.values(natsCodeOf)).size).toBe(codes.length);
    for (const c of codes) expect(codeFromNats(natsCodeOf[c])).toBe(c);
    for (const n of Object.values(natsCodeOf)) expect(natsCodeOf[codeFromNats(n)]).toBe(n);
  });

  it('map Code -> gRPC status -> Code without loss (invertible)', () => {
    expect(new Set(Object.values(grpcStatusOf)).size).toBe(codes.length);
    for (const c of codes) expect(codeFromGrpc(grpcStatusOf[c])).toBe(c);
    for (const n of Object.values(grpcStatusOf)) expect(grpcStatusOf[codeFromGrpc(n)]).toBe(n);
  });

  it('use the numbers of the wire formats', () => {
    // NATS Service API codes are HTTP-like; gRPC ones are google.rpc.Code (1..16, never OK=0).
    for (const n of Object.values(natsCodeOf)) expect(n >= 400 && n < 600).toBe(true);
    for (const n of Object.values(grpcStatusOf)) expect(n >= 1 && n <= 16).toBe(true);
    expect(grpcStatusOf.NOT_FOUND).toBe(5);
    expect(grpcStatusOf.UNIMPLEMENTED).toBe(12);
    expect(grpcStatusOf.UNAVAILABLE).toBe(14);
    expect(natsCodeOf.NOT_FOUND).toBe(404);
    expect(natsCodeOf.UNAVAILABLE).toBe(503);
  });

  it('send unknown numbers to INTERNAL', () => {
    for (const n of [0, 2, 17, -1, 200, 418, 999, Number.NaN]) {
      expect(codeFromGrpc(n) === Code.INTERNAL || grpcStatusOf[codeFromGrpc(n)] === n).toBe(true);
      expect(codeFromNats(n) === Code.INTERNAL || natsCodeOf[codeFromNats(n)] === n).toBe(true);
    }
    // gRPC UNKNOWN (2) and OK (0) have no berth code.
    expect(codeFromGrpc(0)).toBe(Code.INTERNAL);
    expect(codeFromGrpc(2)).toBe(Code.INTERNAL);
    expect(codeFromNats(418)).toBe(Code.INTERNAL);
  });

  it('recognise codes and nothing else', () => {
    for (const c of codes) expect(isCode(c)).toBe(true);
    for (const x of ['internal', 'OK', 'toString', '__proto__', 5, undefined, null])
      expect(isCode(x)).toBe(false);
  });
});

describe('BerthError', () => {
  it('crosses a wire as code and message only, never a stack or cause', () => {
    const e = new BerthError(Code.NOT_FOUND, 'image "busybox" not found', { cause: new Error('secret') });
    expect(JSON.parse(JSON.stringify(e.toWire()))).toEqual({
      code: 'NOT_FOUND',
      message: 'image "busybox" not found',
    });
  });

  it('wraps anything else as INTERNAL and passes BerthErrors through', () => {
    const own = new BerthError(Code.ALREADY_EXISTS, 'x');
    expect(toBerthError(own)).toBe(own);
    const plain = toBerthError(new TypeError('bad'));
    expect(plain.code).toBe(Code.INTERNAL);
    expect(plain.message).toBe('bad');
    expect(toBerthError('string thrown').message).toBe('string thrown');
  });
});
