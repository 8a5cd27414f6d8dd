import { MediaType } from '@berth/api';

/** Docker's uncompressed layer type (not in the shared MediaType table). */
export const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';

/** containerd's MaxManifestSize: manifests and indexes larger than this are refused. */
export const MAX_MANIFEST_SIZE = 4 * 1048 * 1048;

/** Accept header of manifest requests: the four types berth reads, in order of preference. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
  '*/*;q=0.1',
].join(', ');

/** True for an index / manifest list. */
export function isIndex(mt: string): boolean {
  return mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
}

/** True for a single-platform image manifest. */
export function isManifest(mt: string): boolean {
  return mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
}

/** True for Docker schema1, which berth refuses (deprecated since Docker 1.10). */
export function isSchema1(mt: string): boolean {
  return mt === MediaType.dockerSchema1 || mt === MediaType.dockerSchema1Signed;
}

/** Media type of a layer blob from its first bytes (gzip or zstd magic, else plain tar). */
export function layerTypeFromMagic(head: Buffer, docker: boolean): string {
  if (head[0] === 0x1f && head[1] === 0x8b)
    return docker ? MediaType.dockerLayerGzip : MediaType.ociLayerGzip;
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
    return docker ? MediaType.dockerLayerZstd : MediaType.ociLayerZstd;
  }
  return docker ? DOCKER_LAYER_TAR : MediaType.ociLayer;
}

/** Strips parameters from a Content-Type value. */
export function bareMediaType(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]?.trim() ?? '';
}
