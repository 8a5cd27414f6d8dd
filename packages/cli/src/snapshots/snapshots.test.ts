import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { humanSize } from '../format.js';
import { topChainId } from './api.js';
import { mountArgs, mountKey } from './mount.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe('snapshot CLI helpers', () => {
  it('computes the top chainID as image-spec defines it', () => {
    expect(topChainId([d('a')])).toBe(d('a'));
    const two = `sha256:${createHash('sha256')
      .update(`${d('a')} ${d('b')}`)
      .digest('hex')}`;
    expect(topChainId([d('a'), d('b')])).toBe(two);
    const three = `sha256:${createHash('sha256')
      .update(`${two} ${d('c')}`)
      .digest('hex')}`;
    expect(topChainId([d('a'), d('b'), d('c')])).toBe(three);
    expect(() => topChainId([])).toThrow(/no layers/);
  });

  it('prints sizes in SI units like docker', () => {
    expect(humanSize(0)).toBe('0B');
    expect(humanSize(999)).toBe('999B');
    expect(humanSize(1500)).toBe('1.50kB');
    expect(humanSize(12_300_000)).toBe('12.3MB');
    expect(humanSize(250_000_000)).toBe('250MB');
  });

  it('turns mounts into mount(8) arguments and DIRs into view keys', () => {
    expect(mountArgs({ type: 'bind', source: '/s/1/fs', options: ['ro', 'rbind'] }, '/mnt')).toEqual([
      '--bind',
      '-o',
      'ro,rbind',
      '/s/1/fs',
      '/mnt',
    ]);
    expect(
      mountArgs({ type: 'overlay', source: 'overlay', options: ['index=off', 'lowerdir=/a:/b'] }, '/mnt'),
    ).toEqual(['-t', 'overlay', '-o', 'index=off,lowerdir=/a:/b', 'overlay', '/mnt']);
    expect(mountKey('/tmp/x/../y')).toBe('mount:/tmp/y');
  });
});
