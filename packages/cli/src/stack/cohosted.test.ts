import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code } from '@berth/api';
import { loadConfig } from '@berth/kit';
import { afterEach, describe, expect, it } from 'vitest';
import type { SupervisorState } from '../context.js';
import { bundleIsFresh } from './bundles.js';
import { COHOSTED } from './cohosted-services.js';
import { cohostedSetting, makePlan, repoRoot, SERVICE_V8_FLAGS, STACK_SERVICES } from './plan.js';
import { expectedFromState } from './ready.js';

const dirs: string[] = [];
function configEnv(file: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cohosted-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(file));
  return {
    BERTH_CONFIG: join(dir, 'config.json'),
    BERTH_STATE_ROOT: join(dir, 'state'),
    BERTH_RUN_ROOT: join(dir, 'run'),
    BERTH_NODE_ID: 'n1',
    BERTH_NATS_URL: 'nats://127.0.0.1:1',
    BERTH_REDIS_URL: 'redis://127.0.0.1:2',
    ...env,
  };
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('co-hosted plan', () => {
  it('co-hosts the services STACK_SERVICES lists, in its order', () => {
    expect(COHOSTED.map((s) => s.name)).toEqual([...STACK_SERVICES]);
  });

  it('is off by default and on with the config key, the environment or the flag', () => {
    expect(cohostedSetting(configEnv({}))).toBe(false);
    expect(cohostedSetting(configEnv({ cohosted: true }))).toBe(true);
    expect(cohostedSetting(configEnv({ cohosted: true }, { BERTH_COHOSTED: '0' }))).toBe(false);
    expect(cohostedSetting(configEnv({}, { BERTH_COHOSTED: 'true' }))).toBe(true);
    const env = configEnv({});
    expect(makePlan(loadConfig(env), {}, env).cohosted).toBeUndefined();
    const plan = makePlan(loadConfig(env), {}, env, { cohosted: true });
    // Its bundle when the build made one and it is fresh (bundles.test.ts), else the module.
    const bundled = bundleIsFresh(join(repoRoot(), 'packages', 'cli', 'dist', 'services'), 'cohosted');
    expect(plan.cohosted?.main).toMatch(
      bundled
        ? /packages\/cli\/dist\/services\/cohosted\.mjs$/
        : /packages\/cli\/dist\/stack\/cohosted-main\.js$/,
    );
    const unbundled = { ...env, BERTH_SERVICE_BUNDLES: '0' };
    expect(makePlan(loadConfig(unbundled), {}, unbundled, { cohosted: true }).cohosted?.main).toMatch(
      /packages\/cli\/dist\/stack\/cohosted-main\.js$/,
    );
    expect(plan.cohosted?.logFile).toBe(join(env.BERTH_STATE_ROOT as string, 'services', 'cohosted.log'));
    // One process stops its five services one after the other, each with the full grace.
    expect(plan.stopGraceMs).toBe(5 * 10_000 + 5000);
  });

  it.each([
    [{ cohosted: 'yes' }, {}, 'invalid config "cohosted"'],
    [{}, { BERTH_COHOSTED: 'maybe' }, 'invalid BERTH_COHOSTED "maybe"'],
  ])('refuses a bad setting %j %j', (file, env, msg) => {
    expect(() => cohostedSetting(configEnv(file, env))).toThrow(msg);
  });

  it('refuses replicas, from the command line or the config', () => {
    const env = configEnv({ services: { 'task-service': { replicas: 2 } } });
    const expectRefused = (f: () => unknown, service: string) => {
      try {
        f();
        expect.unreachable('the plan was accepted');
      } catch (err) {
        expect((err as { code: string }).code).toBe(Code.INVALID_ARGUMENT);
        expect((err as Error).message).toContain(`replicas of "${service}"`);
      }
    };
    expectRefused(() => makePlan(loadConfig(env), {}, env, { cohosted: true }), 'task-service');
    const plain = configEnv({ cohosted: true });
    expectRefused(() => makePlan(loadConfig(plain), { 'image-service': 3 }, plain), 'image-service');
  });

  it('expects one instance of each co-hosted service from the one process', () => {
    const state = {
      children: [
        { name: 'nats-server', kind: 'embedded', replica: 1 },
        { name: 'cohosted', kind: 'service', replica: 1, services: ['shim', 'image-service'] },
      ],
    } as unknown as SupervisorState;
    expect(expectedFromState(state)).toEqual({ shim: 1, 'image-service': 1 });
  });

  it('starts each process with the default V8 flags unless its v8Flags setting says otherwise', () => {
    const env = configEnv({
      services: { shim: { v8Flags: [] }, cohosted: { v8Flags: ['--max-old-space-size=96'] } },
    });
    const plan = makePlan(loadConfig(env), {}, env, { cohosted: true });
    expect(plan.services.find((s) => s.service === 'shim')?.v8Flags).toEqual([]);
    expect(plan.services.find((s) => s.service === 'task-service')?.v8Flags).toEqual([...SERVICE_V8_FLAGS]);
    expect(plan.cohosted?.v8Flags).toEqual(['--max-old-space-size=96']);
    const bad = configEnv({ services: { shim: { v8Flags: ['--x; rm -rf /'] } } });
    expect(() => makePlan(loadConfig(bad), {}, bad)).toThrow('invalid config "services.shim.v8Flags"');
  });
});
