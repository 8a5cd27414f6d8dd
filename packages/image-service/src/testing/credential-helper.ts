import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Writes docker-credential-NAME into `dir`: a small helper speaking the docker-credential-helpers
 * protocol, keeping its entries in store.json beside it and logging each call (without the
 * secret) to calls.log. Asked about the server `fail.example`, it fails as a locked keychain does.
 */
export async function writeTestHelper(dir: string, name: string): Promise<void> {
  const program = join(dir, `docker-credential-${name}`);
  await writeFile(
    program,
    `#!${process.execPath}
const fs = require('node:fs');
const path = require('node:path');
const file = path.join(__dirname, 'store.json');
const store = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : {};
const input = fs.readFileSync(0, 'utf8');
const action = process.argv[2];
if (input.trim() === 'fail.example') { process.stderr.write('keychain locked\\n'); process.exit(2); }
fs.appendFileSync(path.join(__dirname, 'calls.log'), action + ' ' + input.split('"Secret"')[0] + '\\n');
if (action === 'get') {
  const e = store[input.trim()];
  if (!e) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ ServerURL: input.trim(), Username: e.Username, Secret: e.Secret }));
} else if (action === 'store') {
  const e = JSON.parse(input);
  store[e.ServerURL] = { Username: e.Username, Secret: e.Secret };
  fs.writeFileSync(file, JSON.stringify(store));
} else if (action === 'erase') {
  delete store[input.trim()];
  fs.writeFileSync(file, JSON.stringify(store));
}
`,
  );
  await chmod(program, 0o755);
}
