import type { ImageRecord } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { pullStatus } from './pull-status.js';

const image = { name: 'r.example/app@sha256:ab', target: { digest: 'sha256:ab' } } as unknown as ImageRecord;

describe('pullStatus', () => {
  it('says what the pull did to the name', () => {
    expect(pullStatus({ image, fetchedBytes: 10, reference: 'created' })).toBe(
      'Downloaded newer image for r.example/app@sha256:ab',
    );
    expect(pullStatus({ image, fetchedBytes: 0, reference: 'created' })).toBe(
      'Created r.example/app@sha256:ab from content already on this node (nothing downloaded)',
    );
    expect(pullStatus({ image, fetchedBytes: 0, reference: 'updated' })).toContain(
      'Updated r.example/app@sha256:ab to sha256:ab',
    );
    expect(pullStatus({ image, fetchedBytes: 0, reference: 'unchanged' })).toBe(
      'Image is up to date for r.example/app@sha256:ab',
    );
    // An older image-service does not say: the old wording.
    expect(pullStatus({ image, fetchedBytes: 0 })).toBe('Image is up to date for r.example/app@sha256:ab');
  });
});
