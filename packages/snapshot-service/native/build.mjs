// Builds the berth_fs addon with node-gyp against the headers of the running Node (no download:
// Debian's nodejs ships them under <prefix>/include/node) and copies it into dist/native.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, utimesSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const prefix = resolve(dirname(process.execPath), '..');
const dest = join(pkg, 'dist', 'native', 'berth_fs.node');
// Nothing to do when the installed addon is newer than its sources (a TypeScript-only change).
const sources = ['berth_fs.c', 'binding.gyp', 'build.mjs'].map((f) => statSync(join(here, f)).mtimeMs);
if (existsSync(dest) && statSync(dest).mtimeMs >= Math.max(...sources)) process.exit(0);
const args = ['rebuild', '--loglevel=warn', '--directory', here];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const gyp = join(pkg, 'node_modules', '.bin', 'node-gyp');
execFileSync(gyp, args, { stdio: ['ignore', 'ignore', 'inherit'] });
// Install by rename, never by rewriting the file in place: running processes have the old
// library mapped, and overwriting its pages under them crashes them (SIGSEGV).
const built = join(here, 'build', 'Release', 'berth_fs.node');
mkdirSync(dirname(dest), { recursive: true });
if (!existsSync(dest) || !readFileSync(dest).equals(readFileSync(built))) {
  const tmp = `${dest}.tmp-${process.pid}`;
  copyFileSync(built, tmp);
  renameSync(tmp, dest);
} else {
  const now = new Date();
  utimesSync(dest, now, now);
}
