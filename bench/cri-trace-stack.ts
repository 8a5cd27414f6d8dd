/**
 * The private stack the CRI trace benches run against (cri-trace.ts, cri-pod-trace.ts): this
 * checkout's services with the registry mirrors cri.ts uses, a private CNI conf dir, bridge and
 * subnet, the sandbox image pulled, and crictl (cri-tools v1.26.1, env CRICTL) on its socket.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostLayout } from '@berth/kit';
import { type Stack, startStack } from '../tests/harness/stack.js';
import { freeSubnets, makeNetwork, removeNetwork } from './cri-net.js';

/** A running trace stack: its temporary root, the stack, crictl on its socket, and its end. */
export interface TraceStack {
  root: string;
  stack: Stack;
  /** Runs crictl with these arguments; its stdout trimmed, or throws with its stderr. */
  crictl(...args: string[]): string;
  /** Stops the stack and removes its network and root. */
  stop(): Promise<void>;
}

/** The crictl binary env CRICTL names; exits the bench with a line saying so when unset. */
export function crictlBinary(): string {
  const bin = process.env.CRICTL;
  if (!bin) {
    process.stderr.write('set CRICTL to a crictl binary (cri-tools v1.26.1)\n');
    process.exit(2);
  }
  return bin;
}

/**
 * Starts a trace stack named `name` (its temporary root and CNI network) on bridge `bridge`,
 * mirroring every public registry to env REGISTRY (default 127.0.0.1:5000); `env` is added to its
 * services' environment.
 */
export async function startTraceStack(
  name: string,
  bridge: string,
  env?: NodeJS.ProcessEnv,
): Promise<TraceStack> {
  const bin = crictlBinary();
  const registry = process.env.REGISTRY ?? '127.0.0.1:5000';
  const mirrors = Object.fromEntries(
    ['registry.k8s.io', 'gcr.io', 'public.ecr.aws', 'docker.io'].map((h) => [h, [`http://${registry}`]]),
  );
  const root = await mkdtemp(join(tmpdir(), `berth-${name}-`));
  const [subnet] = freeSubnets(1) as [string];
  const net = await makeNetwork(join(root, 'net'), `${name}-net`, bridge, subnet, 'berth-subnet');
  const stack = await startStack({
    ...(env ? { env } : {}),
    config: {
      services: {
        'image-service': { mirrors },
        'cri-gateway': { sandboxImage: 'registry.k8s.io/pause:3.6' },
        shim: { cniConfDir: net.confDir, cniInstallDefault: false },
      },
    },
  });
  const socket = `unix://${hostLayout(stack).run.criSocket}`;
  const crictl = (...args: string[]): string => {
    const r = spawnSync(
      bin,
      ['--timeout', '60s', '--runtime-endpoint', socket, '--image-endpoint', socket, ...args],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`crictl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const stop = async () => {
    await stack.stop();
    await removeNetwork(net);
    await rm(root, { recursive: true, force: true });
  };
  try {
    crictl('pull', 'registry.k8s.io/pause:3.6');
  } catch (err) {
    await stop();
    throw err;
  }
  return { root, stack, crictl, stop };
}

/**
 * Runs pod `podName` on `t` and, in it, `rounds` crictl rounds of a `sleep` container of `image`:
 * create, start, stop -t 0, rm, one after the other. The pod is left running: its id and config
 * file are returned for the caller's stopp and rmp.
 */
export function containerRounds(
  t: Pick<TraceStack, 'root' | 'crictl'>,
  o: { podName: string; image: string; rounds: number },
): { podId: string; podFile: string } {
  const podFile = join(t.root, `${o.podName}-pod.json`);
  writeFileSync(
    podFile,
    JSON.stringify({
      metadata: { name: o.podName, namespace: 'bench', uid: `${o.podName}-uid`, attempt: 0 },
      log_directory: join(t.root, 'logs'),
    }),
  );
  const podId = t.crictl('runp', podFile);
  const ctrFile = join(t.root, `${o.podName}-ctr.json`);
  for (let i = 0; i < o.rounds; i++) {
    writeFileSync(
      ctrFile,
      JSON.stringify({
        metadata: { name: `c${i}` },
        image: { image: o.image },
        command: ['sleep', '3600'],
        log_path: `c${i}.log`,
      }),
    );
    const id = t.crictl('create', podId, ctrFile, podFile);
    t.crictl('start', id);
    t.crictl('stop', '-t', '0', id);
    t.crictl('rm', id);
  }
  return { podId, podFile };
}
