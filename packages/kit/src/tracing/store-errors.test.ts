import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { trace } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startTelemetry } from '../telemetry.js';

// A span store that cannot be written (a full disk in the chaos suite; here a file where its
// directory should be): the service's log says so in one line, with no stack in it.

const root = mkdtempSync(join(tmpdir(), 'berth-store-errors-'));
const notADir = join(root, 'traces');
writeFileSync(notADir, '');
const telemetry = startTelemetry({ service: 'kit-test', version: '0.0.0', node: 'test', storeDir: notADir });
const lines: string[] = [];
const record = (level: string) => (_o: unknown, message: string) => lines.push(`${level} ${message}`);
telemetry.useLogger({ warn: record('warn'), error: record('error') } as unknown as Logger);

afterAll(async () => {
  await telemetry.shutdown();
  rmSync(root, { recursive: true, force: true });
});

describe('a span store that cannot be written', () => {
  it('is logged in one line, without a stack', async () => {
    trace.getTracer('kit-test').startSpan('first').end();
    // The batch is written 200 ms after the span ends; whatever its failure logs is logged in
    // the same turn (microtasks drain before a timer fires), so the first line seen is the lot.
    for (let i = 0; i < 100 && lines.length === 0; i++) await sleep(20);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error writing spans to .*traces failed: ENOTDIR: not a directory/);
    expect(lines[0]).not.toContain('stack');
  });
});
