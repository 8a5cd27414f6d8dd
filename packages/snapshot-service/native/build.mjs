// Builds the berth_fs addon with node-gyp against the headers of the running Node (no download:
// Debian's nodejs ships them under <prefix>/include/node) and copies it into dist/native.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const prefix = resolve(dirname(process.execPath), '..');
const args = ['rebuild', '--directory', here];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const gyp = join(pkg, 'node_modules', '.bin', 'node-gyp');
execFileSync(gyp, args, { stdio: ['ignore', 'ignore', 'inherit'] });
mkdirSync(join(pkg, 'dist', 'native'), { recursive: true });
copyFileSync(join(here, 'build', 'Release', 'berth_fs.node'), join(pkg, 'dist', 'native', 'berth_fs.node'));
