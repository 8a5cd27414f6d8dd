// Builds each native/<name>.c (seqpacket: conmon's attach socket; mount: mount(2) for rootfs
// overlays; spawn: CNI plugins run off the event loop; sealed: the sealed copy of runc that runc
// init needs no copy of its own from), with the headers they share (native/*.h), into
// build/<name>.node with the host C compiler against the headers of the Node that runs this
// script (N-API is ABI-stable: any Node >= 8 loads it).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  join(dirname(dirname(process.execPath)), 'include', 'node'),
  '/usr/include/node',
].filter(Boolean);
const include = candidates.find((d) => existsSync(join(d, 'node_api.h')));
if (!include) {
  console.error(`build-native: node_api.h not found (looked in ${candidates.join(', ')})`);
  process.exit(1);
}
const cc = process.env.CC || 'cc';
// The headers the sources share (errno-error.h): an addon is rebuilt when one is newer too.
const headers = readdirSync(join(pkg, 'native'))
  .filter((f) => f.endsWith('.h'))
  .map((f) => statSync(join(pkg, 'native', f)).mtimeMs);
for (const name of ['seqpacket', 'mount', 'spawn', 'sealed']) {
  const src = join(pkg, 'native', `${name}.c`);
  const out = join(pkg, 'build', `${name}.node`);
  const newest = Math.max(statSync(src).mtimeMs, ...headers);
  if (existsSync(out) && statSync(out).mtimeMs > newest) continue;
  mkdirSync(dirname(out), { recursive: true });
  execFileSync(
    cc,
    [
      '-O2',
      '-Wall',
      '-Werror',
      '-fPIC',
      '-shared',
      `-DNODE_GYP_MODULE_NAME=${name}`,
      '-I',
      include,
      '-o',
      out,
      src,
    ],
    { stdio: 'inherit' },
  );
  console.log(`build-native: ${out}`);
}
