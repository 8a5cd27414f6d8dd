import type { PullProgress } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { humanSize } from '../format.js';
import { ProgressView } from './progress.js';

function sink(): { out: NodeJS.WriteStream; text: () => string } {
  let s = '';
  const write = (c: string) => {
    s += c;
    return true;
  };
  const out = { write } as unknown as NodeJS.WriteStream;
  return { out, text: () => s };
}

const d = (c: string) => `sha256:${c.repeat(64)}`;
const ev = (blobs: PullProgress['blobs'], phase: PullProgress['phase'] = 'fetching'): PullProgress => ({
  pullId: 'p',
  ref: 'r.example/a:1',
  phase,
  digest: d('f'),
  blobs,
});

describe('ProgressView', () => {
  it('prints one plain line per layer status change when not on a TTY', () => {
    const s = sink();
    const v = new ProgressView(s.out, false, { done: 'Pull complete' });
    v.update(ev([{ digest: d('a'), mediaType: 'x', size: 2_000_000, offset: 0, status: 'waiting' }]));
    v.update(ev([{ digest: d('a'), mediaType: 'x', size: 2_000_000, offset: 10, status: 'downloading' }]));
    v.update(ev([{ digest: d('a'), mediaType: 'x', size: 2_000_000, offset: 20, status: 'downloading' }]));
    v.update(
      ev([{ digest: d('a'), mediaType: 'x', size: 2_000_000, offset: 2_000_000, status: 'done' }], 'done'),
    );
    expect(s.text()).toBe(
      `r.example/a:1: resolved ${d('f')}\naaaaaaaaaaaa: Downloading (2.00MB)\naaaaaaaaaaaa: Pull complete (2.00MB)\n`,
    );
  });

  it('redraws bars in place on a TTY', () => {
    const s = sink();
    const v = new ProgressView(s.out, true);
    const blobs = [
      { digest: d('a'), mediaType: 'x', size: 1000, offset: 500, status: 'downloading' as const },
      { digest: d('b'), mediaType: 'x', size: 10, offset: 10, status: 'exists' as const },
    ];
    v.update(ev(blobs));
    v.update(ev(blobs));
    const text = s.text();
    expect(text).toContain('aaaaaaaaaaaa: Downloading       [==============>               ] 500B/1.00kB');
    expect(text).toContain('bbbbbbbbbbbb: Already exists');
    expect(text).toContain('\x1b[2A');
  });

  it('speaks of pushing, not downloading, for a push', () => {
    const s = sink();
    const v = new ProgressView(s.out, false, { done: 'Pushed', transfer: 'Pushing' });
    v.update(
      ev([{ digest: d('a'), mediaType: 'x', size: 2_000_000, offset: 10, status: 'downloading' as const }]),
    );
    v.update(
      ev([{ digest: d('a'), mediaType: 'x', size: 2_000_000, offset: 2_000_000, status: 'done' as const }]),
    );
    expect(s.text()).toContain('aaaaaaaaaaaa: Pushing (2.00MB)\naaaaaaaaaaaa: Pushed (2.00MB)\n');
    expect(s.text()).not.toContain('Download');
  });

  it('formats sizes like docker', () => {
    expect(humanSize(999)).toBe('999B');
    expect(humanSize(1_500)).toBe('1.50kB');
    expect(humanSize(218_100_000)).toBe('218.1MB');
  });
});
