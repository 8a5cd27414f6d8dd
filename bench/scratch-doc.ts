import { execFileSync } from 'node:child_process';
import { startRegistry } from '@berth/testing';
import { busyboxLayoutTar } from '../tests/e2e/containers-stack.js';
import { startStack, waitFor } from '../tests/harness/stack.js';
const registry = await startRegistry();
const s = await startStack();
try {
  const image = `${registry.host}/busybox:latest`;
  const tar = await busyboxLayoutTar(s.root);
  execFileSync('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci-archive:${tar}`, `docker://${image}`]);
  console.log((await s.berth('--trace', 'pull', image)).stderr);
  await waitFor('pull spans', async () => (await s.berth('trace', '--op', 'pull')).stdout.includes('layer apply'));
  await new Promise((r) => setTimeout(r, 500));
  console.log((await s.berth('trace', '--op', 'pull')).stdout);
  console.log((await s.berth('--trace', 'run', '--rm', image, 'true')).stderr);
  await waitFor('run spans', async () => (await s.berth('trace', '--last')).stdout.includes('task exit'));
  await new Promise((r) => setTimeout(r, 800));
  console.log((await s.berth('trace', '--last')).stdout);
  console.log((await s.berth('trace')).stdout);
} finally {
  await s.stop();
  await registry.stop();
}
