import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot, SERVICE_V8_FLAGS } from './plan.js';
import { MALLOC_ENV } from './stack-plan.js';

const run = promisify(execFile);

// Twenty fetches from a local server, as a pull's registry requests: fetch() parses the replies
// with undici's llhttp, a WebAssembly module.
const FETCHES = `
import http from 'node:http';
const srv = http.createServer((_, res) => res.end('ok')).listen(0, '127.0.0.1');
await new Promise((r) => srv.once('listening', r));
const url = 'http://127.0.0.1:' + srv.address().port + '/';
for (let i = 0; i < 20; i++) await (await fetch(url)).text();
srv.close();
`;

/** The wasm compilations a node with `flags` makes for those fetches, by compiler (V8's trace). */
async function wasmCompilers(flags: readonly string[]): Promise<Record<string, number>> {
  // A tiny tiering budget makes V8 tier a hot function up after a few calls instead of a burst.
  const args = [...flags, '--wasm-tiering-budget=1000', '--trace-wasm-compilation-times'];
  const { stdout } = await run(process.execPath, [...args, '--input-type=module', '-e', FETCHES]);
  const out: Record<string, number> = {};
  for (const m of stdout.matchAll(/^Compiled function \S+ using (\w+),/gm)) {
    const compiler = m[1] as string;
    out[compiler] = (out[compiler] ?? 0) + 1;
  }
  return out;
}

describe('the V8 flags of the stack processes', () => {
  it("keep fetch()'s WebAssembly parser out of TurboFan, whose compile left 20-30 MB in malloc", async () => {
    const [stack, without] = await Promise.all([
      wasmCompilers(SERVICE_V8_FLAGS),
      wasmCompilers(SERVICE_V8_FLAGS.filter((f) => f !== '--liftoff-only')),
    ]);
    // Control: without the flag the same fetches get the parser recompiled by TurboFan.
    expect(without.TurboFan ?? 0).toBeGreaterThan(0);
    expect(stack.Liftoff ?? 0).toBeGreaterThan(0);
    expect(stack.TurboFan ?? 0).toBe(0);
  });

  it("are the systemd units' too, with the same malloc settings", () => {
    for (const name of ['shim', 'snapshot-service', 'image-service', 'task-service', 'cri-gateway']) {
      const unit = readFileSync(join(repoRoot(), 'infra', 'systemd', `berth-${name}.service`), 'utf8');
      const exec = unit.match(/^ExecStart=(.*)$/m)?.[1];
      expect(exec, name).toBe(
        `/usr/bin/node ${SERVICE_V8_FLAGS.join(' ')} /opt/berth/packages/${name}/dist/main.js`,
      );
      const env = [...unit.matchAll(/^Environment=(.*)$/gm)].flatMap((m) => (m[1] ?? '').split(' '));
      for (const [k, v] of Object.entries(MALLOC_ENV)) expect(env, name).toContain(`${k}=${v}`);
    }
  });
});
