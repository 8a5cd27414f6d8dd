import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { chainIds } from './oci.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

describe('chainIds', () => {
  it('follows image-spec: the first is the DiffID, each next hashes "parent diffid"', () => {
    expect(chainIds([])).toEqual([]);
    expect(chainIds([d('a')])).toEqual([d('a')]);
    const two = sha(`${d('a')} ${d('b')}`);
    const three = sha(`${two} ${d('c')}`);
    expect(chainIds([d('a'), d('b'), d('c')])).toEqual([d('a'), two, three]);
    // The chain depends on order: the same layers stacked the other way are another snapshot.
    expect(chainIds([d('b'), d('a')])[1]).not.toBe(two);
  });
});
