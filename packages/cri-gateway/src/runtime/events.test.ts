import { readFileSync } from 'node:fs';
import { ImageTopic, TaskTopic } from '@berth/api';
import { subjectMatches } from '@berth/testing';
import { describe, expect, it } from 'vitest';

// The patterns are literals in gateway.ts (kit's bus-roles test reads them there too, against the
// gateway's NATS role): read them as written.
const gateway = readFileSync(new URL('../gateway.ts', import.meta.url), 'utf8');
const patterns = [...gateway.matchAll(/\bsubscribeEvents\(\s*[\w.]+\s*,\s*'([^']+)'/g)].map(
  (m) => m[1] ?? '',
);

describe('the events the gateway subscribes to', () => {
  it('are every task, container and image topic, and not the snapshot or pull-progress ones', () => {
    expect(patterns.sort()).toEqual(['containers.*', 'images.*', 'tasks.*']);
    for (const topic of [...Object.values(TaskTopic), ...Object.values(ImageTopic)]) {
      expect(
        patterns.some((p) => subjectMatches(p, topic)),
        topic,
      ).toBe(true);
    }
    for (const topic of [
      'snapshots.prepare',
      'snapshots.remove',
      'images.pull.progress.p1',
      'leases.delete',
    ]) {
      expect(
        patterns.some((p) => subjectMatches(p, topic)),
        topic,
      ).toBe(false);
    }
  });
});
