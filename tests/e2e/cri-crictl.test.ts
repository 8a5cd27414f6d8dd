// The CRI socket of a real stack driven by the real crictl (grpc-go, which sends the socket's
// path as :authority). Opt-in: set BERTH_CRICTL to a crictl binary (cri-tools v1.26.1 is what
// kubelet-era clients look like); skipped otherwise, since the project never ships one.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { busyboxTar, makeImage, makeLayer, uploadImage } from '@berth/image-service/testing';
import { hostLayout } from '@berth/kit';
import { startRegistry, type TestServer } from '@berth/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from '../harness/stack.js';

const CRICTL = process.env.BERTH_CRICTL;
const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const img = makeImage([makeLayer(busyboxTar(), 'gzip')], { arch });
const imageId = `sha256:${createHash('sha256').update(img.config).digest('hex')}`;
// A registry name that resolves nowhere: only the configured mirror can serve it.
const MIRRORED = 'mirrored.invalid';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

describe.skipIf(!CRICTL)('crictl against a berth stack', () => {
  let registry: TestServer & { host: string };
  let stack: Stack;
  let socket: string;

  const crictl = (...args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      const endpoint = `unix://${socket}`;
      execFile(
        CRICTL as string,
        ['--timeout', '60s', '--runtime-endpoint', endpoint, '--image-endpoint', endpoint, ...args],
        { timeout: 90_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });

  const ok = async (...args: string[]): Promise<string> => {
    const r = await crictl(...args);
    expect(r.code, `crictl ${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };

  const images = async () =>
    (JSON.parse(await ok('images', '-o', 'json')) as { images: { id: string; repoTags: string[] }[] }).images;

  beforeAll(async () => {
    registry = await startRegistry();
    await uploadImage(registry.url, 'e2e/busybox', 'v1', img);
    stack = await startStack({
      config: { services: { 'image-service': { mirrors: { [MIRRORED]: [registry.url] } } } },
    });
    // Where the gateway listens by default (services.cri-gateway.socket is not set).
    socket = hostLayout(stack).run.criSocket;
  });

  afterAll(async () => {
    await stack?.stop();
    await registry?.stop();
  });

  it('version names berth', async () => {
    const out = await ok('version');
    expect(out).toMatch(/^RuntimeName:\s+berth$/m);
    expect(out).toMatch(/^RuntimeApiVersion:\s+v1$/m);
  });

  it('info reports the runtime ready and each service', async () => {
    const info = JSON.parse(await ok('info')) as {
      status: { conditions: { type: string; status: boolean }[] };
    };
    expect(info.status.conditions.find((c) => c.type === 'RuntimeReady')?.status).toBe(true);
  });

  it('pulls from a registry and through a mirror, lists, inspects and removes images', async () => {
    expect(await images()).toEqual([]);

    const direct = `${registry.host}/e2e/busybox:v1`;
    expect(await ok('pull', direct)).toContain(`Image is up to date for ${imageId}`);
    const viaMirror = `${MIRRORED}/e2e/busybox:v1`;
    expect(await ok('pull', viaMirror)).toContain(`Image is up to date for ${imageId}`);

    const listed = await images();
    expect(listed).toHaveLength(1);
    expect(listed[0]?.id).toBe(imageId);
    expect(listed[0]?.repoTags.sort()).toEqual([direct, viaMirror].sort());

    const inspected = JSON.parse(await ok('inspecti', viaMirror)) as { status: { repoDigests: string[] } };
    expect(inspected.status.repoDigests).toContain(`${MIRRORED}/e2e/busybox@${img.desc.digest}`);

    // CRI RemoveImage removes the image with every tag it has, as containerd's does.
    expect(await ok('rmi', direct)).toContain(`Deleted: ${direct}`);
    expect(await images()).toEqual([]);
    expect(await ok('pull', viaMirror)).toContain(`Image is up to date for ${imageId}`);
    expect(await ok('rmi', viaMirror)).toContain(`Deleted: ${viaMirror}`);
    expect(await images()).toEqual([]);
  });

  it('fails a pull of an image the registry does not have, naming it', async () => {
    const missing = `${registry.host}/e2e/absent:v1`;
    const r = await crictl('pull', missing);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('code = NotFound');
    expect(r.stderr).toContain('e2e/absent');
  });
});
