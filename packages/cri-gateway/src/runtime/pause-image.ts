import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { BerthError, Code, type ImageRecord } from '@berth/api';
import type { ImagePort } from '../images/ports.js';
import { resolveImage } from '../images/resolve.js';
import type { ImageImporter } from './ports.js';

const run = promisify(execFile);

/** The sandbox image containerd 2 uses; berth builds it locally when it is not on the node. */
export const DEFAULT_SANDBOX_IMAGE = 'registry.k8s.io/pause:3.10';
/** Debian's static catatonit (`apt-get install catatonit`): `-P` makes it a pause process. */
export const DEFAULT_PAUSE_BINARY = '/usr/bin/catatonit';

const GOARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
};

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Writes an OCI image-layout tar holding one layer with the pause binary at /pause, entrypoint
 * `/pause -P`, named `name`. Reproducible: the layer tar has fixed owners and times.
 */
export async function buildPauseImage(opts: { binary: string; name: string; dir: string }): Promise<string> {
  const rootfs = join(opts.dir, 'rootfs');
  const layout = join(opts.dir, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  await mkdir(rootfs, { recursive: true });
  await mkdir(blobs, { recursive: true });
  await copyFile(opts.binary, join(rootfs, 'pause'));
  await chmod(join(rootfs, 'pause'), 0o755);
  const layerTar = join(opts.dir, 'layer.tar');
  await run('tar', [
    '--numeric-owner',
    '--owner=0',
    '--group=0',
    '--mtime=@0',
    '--sort=name',
    '-C',
    rootfs,
    '-cf',
    layerTar,
    'pause',
  ]);
  const layer = await readFile(layerTar);
  const gz = gzipSync(layer, { level: 9 });
  const put = async (b: Buffer) => {
    const hex = sha256(b);
    await writeFile(join(blobs, hex), b);
    return { digest: `sha256:${hex}`, size: b.length };
  };
  const layerDesc = await put(gz);
  const config = Buffer.from(
    JSON.stringify({
      architecture: GOARCH[process.arch] ?? process.arch,
      os: 'linux',
      config: { Entrypoint: ['/pause', '-P'], WorkingDir: '/', User: '0:0' },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layer)}`] },
      history: [{ created_by: 'berth cri-gateway: pause image from catatonit' }],
    }),
  );
  const configDesc = await put(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configDesc },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layerDesc }],
    }),
  );
  const manifestDesc = await put(manifest);
  const tag = opts.name.slice(opts.name.lastIndexOf(':') + 1);
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifestDesc,
          annotations: { 'io.containerd.image.name': opts.name, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  const out = join(opts.dir, 'pause.tar');
  await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', layout, '-cf', out, '.']);
  return out;
}

/**
 * Makes sure the sandbox image is on this node: returns its record, building it from the pause
 * binary and importing it (berth runs offline) when absent. Concurrent callers share one build.
 */
export class SandboxImage {
  private inflight: Promise<ImageRecord> | undefined;

  constructor(
    private readonly images: ImagePort,
    private readonly importer: ImageImporter,
    readonly name: string = DEFAULT_SANDBOX_IMAGE,
    private readonly binary: string = DEFAULT_PAUSE_BINARY,
  ) {}

  /** The sandbox image's record, built and imported first when the node lacks it. */
  async ensure(): Promise<ImageRecord> {
    const have = await resolveImage(this.images, this.name);
    if (have) return have;
    this.inflight ??= this.build().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async build(): Promise<ImageRecord> {
    if (!existsSync(this.binary)) {
      throw new BerthError(
        Code.FAILED_PRECONDITION,
        `sandbox image "${this.name}" is not on this node and ${this.binary} to build it is missing: ` +
          'apt-get install catatonit, or pull the image',
      );
    }
    const dir = await mkdtemp(join(tmpdir(), 'berth-pause-'));
    try {
      const tar = await buildPauseImage({ binary: this.binary, name: this.name, dir });
      const reply = await this.importer(tar, this.name);
      const rec = reply.images.find((i) => i.name === this.name) ?? reply.images[0];
      if (!rec) throw new BerthError(Code.INTERNAL, `importing sandbox image "${this.name}" gave no image`);
      return rec;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
