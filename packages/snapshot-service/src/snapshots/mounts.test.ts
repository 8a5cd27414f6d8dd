import { describe, expect, it } from 'vitest';
import { mountsFor, overlaySupportsIndex } from './mounts.js';

const index = () => (overlaySupportsIndex() ? ['index=off'] : []);

describe('mountsFor: containerd overlay rules', () => {
  it('binds a snapshot without parents, read-only for a view', () => {
    expect(mountsFor({ kind: 'active', fs: '/s/1/fs', work: '/s/1/work', parentFs: [] })).toEqual([
      { type: 'bind', source: '/s/1/fs', options: ['rw', 'rbind'] },
    ]);
    expect(mountsFor({ kind: 'view', fs: '/s/1/fs', work: '/s/1/work', parentFs: [] })).toEqual([
      { type: 'bind', source: '/s/1/fs', options: ['ro', 'rbind'] },
    ]);
  });

  it('binds the parent read-only for a view of one parent', () => {
    expect(mountsFor({ kind: 'view', fs: '/s/2/fs', work: '/s/2/work', parentFs: ['/s/1/fs'] })).toEqual([
      { type: 'bind', source: '/s/1/fs', options: ['ro', 'rbind'] },
    ]);
  });

  it('overlays the parents nearest first, with upper and work dirs only when active', () => {
    const parents = ['/s/3/fs', '/s/2/fs', '/s/1/fs'];
    expect(mountsFor({ kind: 'active', fs: '/s/4/fs', work: '/s/4/work', parentFs: parents })).toEqual([
      {
        type: 'overlay',
        source: 'overlay',
        options: [...index(), 'workdir=/s/4/work', 'upperdir=/s/4/fs', 'lowerdir=/s/3/fs:/s/2/fs:/s/1/fs'],
      },
    ]);
    expect(mountsFor({ kind: 'view', fs: '/s/4/fs', work: '/s/4/work', parentFs: parents })).toEqual([
      { type: 'overlay', source: 'overlay', options: [...index(), 'lowerdir=/s/3/fs:/s/2/fs:/s/1/fs'] },
    ]);
  });
});
