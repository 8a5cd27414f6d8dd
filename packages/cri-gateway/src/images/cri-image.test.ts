import { BerthError, Code, type ImageRecord } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { registryAuthOf } from './auth.js';
import { criUser, splitName, toCriImages } from './cri-image.js';
import { normalizeRef, normalizeRepo } from './resolve.js';

const hex = (c: string) => c.repeat(64);

function record(name: string, id: string, target: string, user?: string): ImageRecord {
  return {
    name,
    target: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: target, size: 100 },
    manifest: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${hex('e')}`,
      size: 50,
    },
    configDigest: id,
    config: {
      architecture: 'amd64',
      os: 'linux',
      ...(user !== undefined ? { config: { User: user } } : {}),
      rootfs: { type: 'layers', diff_ids: [] },
    },
    size: 1234,
    labels: {},
    createdAt: '2026-01-01T00:00:00Z',
    updatedAt: '2026-01-01T00:00:00Z',
  } as ImageRecord;
}

describe('CRI image mapping', () => {
  it('reports the user as uid when numeric, username otherwise, the group dropped', () => {
    expect(criUser(undefined)).toEqual({ uid: null, username: '' });
    expect(criUser('')).toEqual({ uid: null, username: '' });
    expect(criUser('1000')).toEqual({ uid: { value: '1000' }, username: '' });
    expect(criUser('0:0')).toEqual({ uid: { value: '0' }, username: '' });
    expect(criUser('www')).toEqual({ uid: null, username: 'www' });
    expect(criUser('nobody:nogroup')).toEqual({ uid: null, username: 'nobody' });
  });

  it('splits names into repository and tag, with registry ports and digests', () => {
    expect(splitName('127.0.0.1:5000/a/b:v1')).toEqual({ repo: '127.0.0.1:5000/a/b', tagged: true });
    expect(splitName('127.0.0.1:5000/a/b')).toEqual({ repo: '127.0.0.1:5000/a/b', tagged: false });
    expect(splitName(`h/a@sha256:${hex('a')}`)).toEqual({ repo: 'h/a', tagged: false });
  });

  it('folds names by id: tags, repo digests per repository, size and user', () => {
    const id1 = `sha256:${hex('1')}`;
    const id2 = `sha256:${hex('2')}`;
    const idx = `sha256:${hex('a')}`;
    const images = toCriImages([
      record('docker.io/library/busybox:1.36', id1, idx, '65534'),
      record('docker.io/library/busybox:latest', id1, idx, '65534'),
      record(`h:5000/mirror/busybox@${idx}`, id1, idx, '65534'),
      record('h:5000/app:v2', id2, `sha256:${hex('b')}`, 'app'),
    ]);
    expect(images).toEqual([
      {
        id: id1,
        repo_tags: ['docker.io/library/busybox:1.36', 'docker.io/library/busybox:latest'],
        repo_digests: [`docker.io/library/busybox@${idx}`, `h:5000/mirror/busybox@${idx}`],
        size: '1234',
        uid: { value: '65534' },
        username: '',
        spec: { image: id1, annotations: {} },
        pinned: false,
      },
      {
        id: id2,
        repo_tags: ['h:5000/app:v2'],
        repo_digests: [`h:5000/app@sha256:${hex('b')}`],
        size: '1234',
        uid: null,
        username: 'app',
        spec: { image: id2, annotations: {} },
        pinned: false,
      },
    ]);
  });

  it('pins an image any of whose names is pinned (the sandbox image)', () => {
    const pause = `sha256:${hex('3')}`;
    const other = `sha256:${hex('4')}`;
    const images = toCriImages(
      [
        record('registry.k8s.io/pause:3.10', pause, `sha256:${hex('c')}`),
        record('h/pause:copy', pause, `sha256:${hex('c')}`),
        record('h/app:v1', other, `sha256:${hex('d')}`),
      ],
      new Set(['registry.k8s.io/pause:3.10']),
    );
    expect(images.map((i) => [i.id, i.pinned])).toEqual([
      [pause, true],
      [other, false],
    ]);
  });

  it('normalizes references as the image-service names images', () => {
    expect(normalizeRef('pause:3.10')).toBe('docker.io/library/pause:3.10');
    expect(normalizeRef('registry.k8s.io/pause:3.10')).toBe('registry.k8s.io/pause:3.10');
    expect(normalizeRef('localhost:5000/pause')).toBe('localhost:5000/pause:latest');
    expect(normalizeRef(`busybox@sha256:${hex('a')}`)).toBe(`docker.io/library/busybox@sha256:${hex('a')}`);
  });

  it('normalizes repositories as docker does', () => {
    expect(normalizeRepo('busybox')).toBe('docker.io/library/busybox');
    expect(normalizeRepo('user/app')).toBe('docker.io/user/app');
    expect(normalizeRepo('localhost/app')).toBe('localhost/app');
    expect(normalizeRepo('127.0.0.1:5000/app')).toBe('127.0.0.1:5000/app');
    expect(normalizeRepo('index.docker.io/library/x')).toBe('docker.io/library/x');
  });
});

describe('CRI AuthConfig', () => {
  it('maps username/password, auth (base64 user:pass, winning) and tokens', () => {
    expect(registryAuthOf(undefined, 'x')).toBeUndefined();
    expect(registryAuthOf({ username: '', password: '', auth: '' }, 'x')).toBeUndefined();
    expect(registryAuthOf({ username: 'a', password: 'p' }, 'x')).toEqual({ username: 'a', password: 'p' });
    const auth = Buffer.from('bob:pa:ss').toString('base64');
    expect(registryAuthOf({ username: 'a', password: 'p', auth }, 'x')).toEqual({
      username: 'bob',
      password: 'pa:ss',
    });
    expect(registryAuthOf({ registry_token: 'rt', identity_token: 'it' }, 'x')).toEqual({
      registryToken: 'rt',
      identityToken: 'it',
    });
  });

  it('refuses an auth that is not base64 of user:password, naming the image', () => {
    for (const auth of ['%%%', Buffer.from('nocolon').toString('base64')]) {
      let err: unknown;
      try {
        registryAuthOf({ auth }, 'h/app:v1');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
      expect((err as BerthError).message).toContain('"h/app:v1"');
    }
  });
});
