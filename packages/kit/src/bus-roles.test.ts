// The bus roles (@berth/api busRoles) must cover what each package's code really does on NATS:
// every service it calls through `call`/`client`, every operation it calls of a service it may
// reach only in part, every event topic it publishes or subscribes to. A call added without a
// grant fails here, not as a permissions violation under `berth up`.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BusRole,
  busRoles,
  CriApi,
  ImageApi,
  type Principal,
  type ServiceDef,
  ShimApi,
  SnapshotApi,
  TaskApi,
  TaskTopic,
} from '@berth/api';
import { subjectMatches } from '@berth/testing';
import { describe, expect, it } from 'vitest';

const PACKAGES = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const APIS: Record<string, ServiceDef> = { ImageApi, SnapshotApi, TaskApi, ShimApi, CriApi };
/** Packages that run as a principal; the SDK (packages/client) is used with the CLI's login. */
const PACKAGE_ROLE: Record<string, Principal> = {
  'image-service': 'image-service',
  'snapshot-service': 'snapshot-service',
  'task-service': 'task-service',
  shim: 'shim',
  'cri-gateway': 'cri-gateway',
  cli: 'cli',
  client: 'cli',
};
/** Constants the code publishes through, by name. */
const TOPIC_CONSTANTS: Record<string, string> = {
  ...Object.fromEntries(Object.entries(TaskTopic).map(([k, v]) => [`TaskTopic.${k}`, v])),
  EXIT_TOPIC: TaskTopic.taskExit,
};

/** Non-test sources of a package (test helpers under testing/ and testdata/ left out). */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (!['node_modules', 'testdata', 'testing'].includes(e.name)) out.push(...sources(p));
    } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** What a role lacks for the NATS uses found in `text`, one line each. */
export function uncovered(role: BusRole, text: string): string[] {
  const out: string[] = [];
  const grants = [...role.calls, ...(role.serves ? [{ service: role.serves, ops: ['info'] }] : [])];
  const grantOf = (api: string) => grants.find((g) => g.service === APIS[api]);
  for (const m of text.matchAll(/\b(?:call|client)\(\s*[\w.]+\s*,\s*(\w+Api)\b(?:\s*,\s*'([\w-]+)')?/g)) {
    const [, api = '', op] = m;
    if (!APIS[api]) continue;
    const g = grantOf(api);
    if (!g) out.push(`calls ${api}`);
    else if (op && g.ops && !g.ops.includes(op)) out.push(`calls ${api} ${op}`);
  }
  // A client of a service reached in part: each operation called on it must be granted.
  for (const m of text.matchAll(/\b(?:const|let)\s+(\w+)\s*=\s*client\(\s*[\w.]+\s*,\s*(\w+Api)\b/g)) {
    const [, name = '', api = ''] = m;
    const ops = grantOf(api)?.ops;
    if (!ops) continue;
    const uses = text.matchAll(new RegExp(`\\b${name}(?:\\.(\\w+)|\\['([\\w-]+)'\\])\\s*\\(`, 'g'));
    for (const u of uses) {
      const op = u[1] ?? u[2] ?? '';
      if (!ops.includes(op)) out.push(`calls ${api} ${op}`);
    }
  }
  const topicOf = (arg: string) => (arg.startsWith("'") ? arg.slice(1, -1) : TOPIC_CONSTANTS[arg]);
  for (const m of text.matchAll(/\bsubscribeEvents\(\s*[\w.]+\s*,\s*('[^']+'|[\w.]+)/g)) {
    const topic = topicOf(m[1] ?? '');
    if (topic && !role.listens.some((l) => subjectMatches(l, topic))) out.push(`listens ${topic}`);
  }
  const opTopics = role.serves
    ? Object.values(role.serves.ops).flatMap((o) => (o.events ? [o.events.replace(/\{\w+\}/g, '*')] : []))
    : [];
  for (const m of text.matchAll(/\b(?:publishEvent\(\s*[\w.]+\s*,|publish\()\s*('[^']+'|[\w.]+|`[^`]+`)/g)) {
    const arg = m[1] ?? '';
    const topic = arg.startsWith('`') ? arg.slice(1, -1).replace(/\$\{[^}]+\}/g, 'x') : topicOf(arg);
    if (!topic) continue;
    if (![...role.emits, ...opTopics].some((e) => subjectMatches(e, topic))) out.push(`emits ${topic}`);
  }
  return out;
}

describe('bus roles', () => {
  it('finds what a role lacks (the check itself)', () => {
    const gw = busRoles['cri-gateway'];
    expect(uncovered(gw, "call(nc, ShimApi, 'create', {})")).toEqual(['calls ShimApi create']);
    expect(
      uncovered(gw, "const shim = client(nc, ShimApi, {}); shim['network-setup']({}); shim.kill({})"),
    ).toEqual(['calls ShimApi kill']);
    expect(uncovered(busRoles.shim, 'client(nc, TaskApi, {})')).toEqual(['calls TaskApi']);
    expect(uncovered(busRoles.shim, "publishEvent(nc, 'tasks.start', ns, e)")).toEqual(['emits tasks.start']);
    expect(uncovered(busRoles.shim, 'this.publish(EXIT_TOPIC, ns, e)')).toEqual([]);
    expect(uncovered(busRoles['image-service'], `publish(\`images.pull.progress.\${id}\`, ns, p)`)).toEqual(
      [],
    );
    expect(uncovered(busRoles['task-service'], "subscribeEvents(nc, 'tasks.start', cb)")).toEqual([
      'listens tasks.start',
    ]);
    expect(subjectMatches('berth.events.>', 'berth.events.tasks.exit')).toBe(true);
    expect(subjectMatches('snapshots.*', 'snapshots.a.b')).toBe(false);
  });

  it('sees the real uses: with no grants, the known calls, events and subscriptions show up', () => {
    const none: BusRole = { calls: [], anyNode: false, emits: [], listens: [], discovers: false };
    const seen = (pkg: string) =>
      sources(join(PACKAGES, pkg, 'src')).flatMap((f) => uncovered(none, readFileSync(f, 'utf8')));
    expect(seen('cri-gateway')).toEqual(
      expect.arrayContaining([
        'calls ShimApi',
        'calls TaskApi',
        'listens containers.*',
        'listens tasks.*',
        'listens images.*',
        'calls ImageApi',
      ]),
    );
    expect(seen('task-service')).toEqual(
      expect.arrayContaining([
        'calls ShimApi',
        'listens tasks.exit',
        'emits tasks.start',
        'emits containers.create',
      ]),
    );
    expect(seen('snapshot-service')).toEqual(
      expect.arrayContaining(['calls ImageApi', 'emits snapshots.prepare']),
    );
    expect(seen('image-service')).toEqual(
      expect.arrayContaining(['calls TaskApi', 'emits images.pull.progress.x']),
    );
    expect(seen('shim')).toEqual(expect.arrayContaining(['emits tasks.exit']));
  });

  it("every package's calls, events and subscriptions are in its principal's role", () => {
    const found: string[] = [];
    for (const [pkg, principal] of Object.entries(PACKAGE_ROLE)) {
      for (const file of sources(join(PACKAGES, pkg, 'src'))) {
        const lines = uncovered(busRoles[principal], readFileSync(file, 'utf8'));
        found.push(...lines.map((l) => `${pkg} (${file.slice(PACKAGES.length + 1)}): ${l}`));
      }
    }
    expect(found).toEqual([]);
  });
});
