import { BerthError, Code, type ImageRecord, ImageTopic } from '@berth/api';
import { describe, expect, it, vi } from 'vitest';
import type { EventSource } from '../runtime/events.js';
import { ImageView } from './image-view.js';
import { CRI_NAMESPACE, type ImagePort } from './ports.js';

// The view against an image-service held in a map (the port the CRI image code talks to), with
// events delivered by hand: what it answers from memory, and what it asks the service.

const ID = `sha256:${'a'.repeat(64)}`;
const rec = (name: string, updatedAt = '2026-12-01T00:00:00Z') =>
  ({
    name,
    configDigest: ID,
    target: { digest: `sha256:${'b'.repeat(64)}` },
    updatedAt,
  }) as unknown as ImageRecord;

function fakeImages() {
  const records = new Map<string, ImageRecord>();
  const reads = { get: 0, list: 0 };
  const port = {
    get: async (name: string) => {
      reads.get++;
      const r = records.get(name) ?? [...records.values()].find((x) => x.configDigest.startsWith(name));
      if (!r) throw new BerthError(Code.NOT_FOUND, `image "${name}" not found`);
      return r;
    },
    list: async () => {
      reads.list++;
      return [...records.values()];
    },
    pull: async (req: { ref: string }) => {
      const r = rec(req.ref);
      records.set(req.ref, r);
      return { image: r, unpack: 'done' };
    },
    remove: async (req: { name: string }) => {
      records.delete(req.name);
      return {};
    },
  } as unknown as ImagePort;
  return { records, reads, port };
}

function manualEvents() {
  let handler: Parameters<EventSource>[0] = () => undefined;
  const source: EventSource = (h) => {
    handler = h;
    return () => undefined;
  };
  return {
    source,
    fire: (topic: string, name: string, updatedAt?: string, chainId = '') =>
      handler({ topic, namespace: CRI_NAMESPACE, timestamp: '', event: { name, updatedAt, chainId } }),
  };
}

describe('ImageView', () => {
  it('answers a name (normalized) and a full id from memory, an id prefix from the service', async () => {
    const t = fakeImages();
    t.records.set('docker.io/library/busybox:latest', rec('docker.io/library/busybox:latest'));
    const view = new ImageView(t.port);
    await view.follow(manualEvents().source, 60_000);
    const before = t.reads.get;
    expect((await view.get('busybox')).name).toBe('docker.io/library/busybox:latest');
    expect((await view.get(ID)).name).toBe('docker.io/library/busybox:latest');
    expect((await view.get('a'.repeat(64))).configDigest).toBe(ID);
    expect(t.reads.get).toBe(before);
    expect((await view.get('sha256:aaaa')).configDigest).toBe(ID);
    expect(t.reads.get).toBe(before + 1);
    await expect(view.get('nothere:1')).rejects.toMatchObject({ code: Code.NOT_FOUND });
    view.close();
  });

  it('answers getNow and listNow from memory only, with what get and list would answer', async () => {
    const t = fakeImages();
    const ev = manualEvents();
    const view = new ImageView(t.port);
    // Not loaded yet: only the service can tell.
    expect(view.getNow('busybox')).toBeUndefined();
    expect(view.listNow()).toBeUndefined();
    t.records.set('docker.io/library/busybox:latest', rec('docker.io/library/busybox:latest'));
    await view.follow(ev.source, 60_000);
    const reads = { ...t.reads };
    expect(view.getNow('busybox')).toBe(await view.get('busybox'));
    expect(view.getNow(ID)).toBe(await view.get(ID));
    expect(view.listNow()).toBe(await view.list());
    // A name it does not hold, or an id prefix: get() asks the service, getNow cannot tell.
    expect(view.getNow('nothere:1')).toBeUndefined();
    expect(view.getNow('sha256:aaaa')).toBeUndefined();
    expect(t.reads).toEqual(reads);
    // An event names the image: until its read lands, the kept record may be stale.
    t.records.set(
      'docker.io/library/busybox:latest',
      rec('docker.io/library/busybox:latest', '2026-12-03T00:00:00Z'),
    );
    ev.fire(ImageTopic.imageUpdate, 'docker.io/library/busybox:latest', '2026-12-03T00:00:00Z');
    expect(view.getNow('busybox')).toBeUndefined();
    expect(view.listNow()).toBeUndefined();
    expect((await view.get('busybox')).updatedAt).toBe('2026-12-03T00:00:00Z');
    expect(view.getNow('busybox')?.updatedAt).toBe('2026-12-03T00:00:00Z');
    view.close();
  });

  it('shows a pull and a removal to the next read, and follows image events', async () => {
    const t = fakeImages();
    const ev = manualEvents();
    const view = new ImageView(t.port);
    await view.follow(ev.source, 60_000);
    await view.pull({ ref: 'registry.test/a:1' } as never);
    expect((await view.list()).map((r) => r.name)).toEqual(['registry.test/a:1']);
    await view.remove({ name: 'registry.test/a:1' });
    expect(await view.list()).toEqual([]);
    // Someone else tags and removes: the events say so.
    t.records.set('registry.test/b:1', rec('registry.test/b:1'));
    ev.fire(ImageTopic.imageUpdate, 'registry.test/b:1');
    expect((await view.list()).map((r) => r.name)).toEqual(['registry.test/b:1']);
    t.records.delete('registry.test/b:1');
    ev.fire(ImageTopic.imageDelete, 'registry.test/b:1');
    expect(await view.list()).toEqual([]);
    view.close();
  });

  it("reads nothing again for a pull's own update event, and reads a later write's", async () => {
    const t = fakeImages();
    const ev = manualEvents();
    const view = new ImageView(t.port);
    await view.follow(ev.source, 60_000);
    const pulled = (await view.pull({ ref: 'registry.test/a:1' } as never)).image;
    const before = t.reads.get;
    // The event of the write whose record the reply brought, after the reply.
    ev.fire(ImageTopic.imageUpdate, 'registry.test/a:1', pulled.updatedAt, pulled.chainId ?? '');
    expect(await view.get('registry.test/a:1')).toBe(pulled);
    expect(t.reads.get).toBe(before);
    // An unpack (berth image unpack, an import's) writes it again with a chainId and the same
    // updatedAt: read again, and shown.
    t.records.set('registry.test/a:1', { ...pulled, chainId: `sha256:${'c'.repeat(64)}` });
    ev.fire(ImageTopic.imageUpdate, 'registry.test/a:1', pulled.updatedAt, `sha256:${'c'.repeat(64)}`);
    expect((await view.get('registry.test/a:1')).chainId).toBe(`sha256:${'c'.repeat(64)}`);
    expect(t.reads.get).toBe(before + 1);
    // Another write of the name (a tag, a pull elsewhere): read again, and shown.
    t.records.set('registry.test/a:1', rec('registry.test/a:1', '2026-12-02T00:00:00Z'));
    ev.fire(ImageTopic.imageUpdate, 'registry.test/a:1', '2026-12-02T00:00:00Z');
    expect((await view.get('registry.test/a:1')).updatedAt).toBe('2026-12-02T00:00:00Z');
    expect(t.reads.get).toBe(before + 2);
    view.close();
  });

  it('reads nothing for the events of a pull in flight through it, and reads after a failed one', async () => {
    const t = fakeImages();
    const ev = manualEvents();
    const view = new ImageView(t.port);
    await view.follow(ev.source, 60_000);
    const name = 'registry.test/a:1';
    let finish: () => void = () => undefined;
    const inner = t.port.pull;
    t.port.pull = async (req) => {
      // The image-service writes the record (its first event) before the unpack ends the pull.
      t.records.set(name, rec(name, '2026-12-02T00:00:00Z'));
      ev.fire(ImageTopic.imageUpdate, name, '2026-12-02T00:00:00Z');
      await new Promise<void>((resolve) => {
        finish = resolve;
      });
      return inner(req);
    };
    const before = t.reads.get;
    const pulled = view.pull({ ref: name } as never);
    await vi.waitFor(() => expect(t.records.has(name)).toBe(true));
    finish();
    expect((await pulled).image.name).toBe(name);
    expect(t.reads.get).toBe(before);
    // A failed pull: what it may have written is read again.
    t.port.pull = async () => {
      t.records.set(name, rec(name, '2026-12-03T00:00:00Z'));
      ev.fire(ImageTopic.imageUpdate, name, '2026-12-03T00:00:00Z');
      throw new BerthError(Code.INTERNAL, 'unpack failed');
    };
    await expect(view.pull({ ref: name } as never)).rejects.toThrow('unpack failed');
    expect((await view.get(name)).updatedAt).toBe('2026-12-03T00:00:00Z');
    expect(t.reads.get).toBe(before + 1);
    view.close();
  });

  it('lists newest first, the same list until an image changes, and a full id names the newest', async () => {
    const t = fakeImages();
    t.records.set('registry.test/old:1', rec('registry.test/old:1', '2026-12-01T00:00:00Z'));
    t.records.set('registry.test/new:1', rec('registry.test/new:1', '2026-12-03T00:00:00Z'));
    t.records.set('registry.test/mid:1', rec('registry.test/mid:1', '2026-12-02T00:00:00Z'));
    const ev = manualEvents();
    const view = new ImageView(t.port);
    await view.follow(ev.source, 60_000);
    const first = await view.list();
    expect(first.map((r) => r.name)).toEqual([
      'registry.test/new:1',
      'registry.test/mid:1',
      'registry.test/old:1',
    ]);
    // Sorted once: the next read gets the same list.
    expect(await view.list()).toBe(first);
    expect((await view.get(ID)).name).toBe('registry.test/new:1');
    // A pull (newest of all now) and a removal show in the next list.
    await view.pull({ ref: 'registry.test/pulled:1' } as never);
    await view.remove({ name: 'registry.test/new:1' });
    const after = await view.list();
    expect(after).not.toBe(first);
    expect(after.map((r) => r.name)).toEqual([
      'registry.test/mid:1',
      'registry.test/old:1',
      'registry.test/pulled:1',
    ]);
    view.close();
  });
});
