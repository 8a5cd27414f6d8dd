import { BerthError } from '@berth/api';
import { expect } from 'vitest';

/** The BerthError a call fails with (fails the test when it succeeds or throws something else). */
export async function failure(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}
