import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { decodeResizes, encodeStatus, exitCodeStatus, internalErrorStatus, successStatus } from './status.js';
import type { TerminalSize } from './types.js';

async function sizes(...chunks: string[]): Promise<TerminalSize[]> {
  const out: TerminalSize[] = [];
  for await (const size of decodeResizes(Readable.from(chunks.map((c) => Buffer.from(c))))) out.push(size);
  return out;
}

describe('resize stream decoding', () => {
  it("reads Go's encoder output, objects split anywhere, field names in any case", async () => {
    expect(await sizes('{"Width":80,"He', 'ight":24}\n{"width":1', '00,"height":40}\n')).toEqual([
      { width: 80, height: 24 },
      { width: 100, height: 40 },
    ]);
  });

  it('stops at the first value that is not a terminal size, as kubelet does', async () => {
    expect(await sizes('{"Width":80,"Height":24}{"Width":-1,"Height":2}{"Width":90,"Height":30}')).toEqual([
      { width: 80, height: 24 },
    ]);
    expect(await sizes('not json {"Width":1}')).toEqual([]);
  });

  it('gives up on a stream that never completes an object', async () => {
    expect(await sizes(`{"Width":${'1'.repeat(5000)}`)).toEqual([]);
  });
});

describe('error stream status', () => {
  it('is JSON for v4 and later, and for older versions only a failure message', () => {
    expect(encodeStatus(successStatus(), true)?.toString()).toBe('{"metadata":{},"status":"Success"}');
    expect(encodeStatus(successStatus(), false)).toBeUndefined();
    expect(JSON.parse(encodeStatus(exitCodeStatus(2), true)?.toString() ?? '')).toEqual({
      metadata: {},
      status: 'Failure',
      message: 'command terminated with non-zero exit code: exit status 2',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '2' }] },
    });
    expect(encodeStatus(internalErrorStatus('boom'), false)?.toString()).toBe(
      'Internal error occurred: boom',
    );
  });
});
