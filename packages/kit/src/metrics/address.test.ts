import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError, Code } from '@berth/api';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { parseMetricsAddress } from './targets.js';

const configDir = mkdtempSync(join(tmpdir(), 'berth-metrics-config-'));
const configFile = join(configDir, 'config.json');
writeFileSync(configFile, '{}\n');
afterAll(() => rmSync(configDir, { recursive: true, force: true }));

function load(value: string) {
  return loadConfig({ BERTH_CONFIG: configFile, BERTH_METRICS_ADDRESS: value });
}

describe('metricsAddress', () => {
  it('accepts host:port, [v6]:port and off', () => {
    expect(load('127.0.0.1:9464').metricsAddress).toBe('127.0.0.1:9464');
    expect(parseMetricsAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseMetricsAddress(load('[::1]:9464').metricsAddress ?? '')).toEqual({ host: '::1', port: 9464 });
    expect(parseMetricsAddress(load('off').metricsAddress ?? '')).toBeUndefined();
  });

  it.each(['9464', 'localhost', '127.0.0.1:99999', 'http://127.0.0.1:9464', '127.0.0.1:94 64'])(
    'refuses %s, naming the field and the variable',
    (bad) => {
      let err: unknown;
      try {
        load(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
      expect((err as BerthError).message).toMatch(
        /^invalid config "metricsAddress" \(from environment BERTH_METRICS_ADDRESS\)/,
      );
    },
  );
});
