import { Code, type ImageEvent, type ImageRecord, ImageTopic, toBerthError } from '@berth/api';
import type { EventSource } from '../runtime/events.js';
import { Mirror } from '../runtime/mirror.js';
import { CRI_NAMESPACE, type ImagePort } from './ports.js';
import { normalizeRef } from './resolve.js';

const IMAGE_ID = /^(?:sha256:)?([a-f0-9]{64})$/;

/**
 * The CRI namespace's images of this node, kept in the gateway's memory so ImageStatus and
 * ListImages (the kubelet asks before every container it creates) answer without a NATS round
 * trip. An ImagePort in front of the image-service's: a name (normalized as the image-service
 * stores it) or a full image id is answered from memory; anything else (an id prefix, a name not
 * kept) asks the image-service. Pulls and removals refresh what they changed before the next read
 * of it; image events refresh the name they carry; everything is read again every `resyncMs`.
 */
export class ImageView implements ImagePort {
  private readonly mirror: Mirror<ImageRecord>;
  private unsubscribe: (() => void) | undefined;
  /** Names with a pull through this view in flight, with how many: their reply sets the record. */
  private readonly pulling = new Map<string, number>();

  constructor(
    private readonly inner: ImagePort,
    onError: (err: unknown) => void = () => undefined,
  ) {
    this.mirror = new Mirror<ImageRecord>(
      {
        fetch: async (name) => {
          try {
            const rec = await inner.get(name);
            return rec.name === name ? rec : undefined;
          } catch (err) {
            if (toBerthError(err).code === Code.NOT_FOUND) return undefined;
            throw err;
          }
        },
        list: async () => (await inner.list()).map((r) => [r.name, r]),
      },
      onError,
    );
  }

  /** Follows image events, loads every image and resyncs every `resyncMs`. */
  async follow(events: EventSource, resyncMs: number): Promise<void> {
    this.unsubscribe = events((e) => {
      if (e.namespace !== CRI_NAMESPACE) return;
      if (e.topic !== ImageTopic.imageUpdate && e.topic !== ImageTopic.imageDelete) return;
      const event = e.event as Partial<ImageEvent> | undefined;
      const name = event?.name;
      if (typeof name !== 'string') return;
      if (e.topic === ImageTopic.imageUpdate) {
        // A pull through this view writes the record twice (before and after the unpack); its
        // reply brings the last one: reading the first while the pull runs would be thrown away.
        if (this.pulling.has(name)) return;
        // The reply (kept as the record) usually comes with or before the pull's own last event.
        if (showsUpdate(this.mirror.peek(name), event)) return;
      }
      void this.mirror.refresh(name);
    });
    await this.mirror.start(resyncMs);
  }

  /** Stops following; reads go to the image-service from then on. */
  close(): void {
    this.unsubscribe?.();
    this.mirror.stop();
  }

  /** Reads every image again (after a reconnect). */
  resync(): Promise<void> {
    return this.mirror.resync();
  }

  async get(name: string): Promise<ImageRecord> {
    if (this.mirror.loaded) {
      const id = IMAGE_ID.exec(name);
      const hit = id
        ? await this.mirror
            .derive(newestFirst)
            .then((all) => all?.find((r) => r.configDigest === `sha256:${id[1]}`))
        : await this.mirror.get(normalizeRef(name));
      if (hit) return hit;
    }
    return this.inner.get(name);
  }

  /**
   * The record a name or full image id names, when the view holds it and no refresh of it is in
   * flight; undefined when only get() can tell (not loaded, not kept, being refreshed, absent).
   */
  getNow(name: string): ImageRecord | undefined {
    if (!this.mirror.loaded) return undefined;
    const id = IMAGE_ID.exec(name);
    if (id) return this.listNow()?.find((r) => r.configDigest === `sha256:${id[1]}`);
    return this.mirror.getNow(normalizeRef(name))?.value;
  }

  /** list() when it can answer without waiting for a refresh; undefined otherwise. */
  listNow(): readonly ImageRecord[] | undefined {
    return this.mirror.loaded ? this.mirror.deriveNow(newestFirst) : undefined;
  }

  async list(): Promise<readonly ImageRecord[]> {
    // Sorted once per change of the records, not per call: shared, so callers must not change it.
    const kept = this.mirror.loaded ? await this.mirror.derive(newestFirst) : undefined;
    return kept ?? this.inner.list();
  }

  async pull(req: Parameters<ImagePort['pull']>[0]): ReturnType<ImagePort['pull']> {
    const name = normalizeRef(req.ref);
    this.pulling.set(name, (this.pulling.get(name) ?? 0) + 1);
    let reply: Awaited<ReturnType<ImagePort['pull']>>;
    try {
      reply = await this.inner.pull(req);
    } catch (err) {
      // What the failed pull wrote (if anything) came in events this view let pass: read it.
      if (this.mirror.loaded) void this.mirror.refresh(name);
      throw err;
    } finally {
      const left = (this.pulling.get(name) ?? 1) - 1;
      if (left > 0) this.pulling.set(name, left);
      else this.pulling.delete(name);
    }
    if (this.mirror.loaded) {
      // The reply holds the image's record as stored: kept as it is, with no re-read.
      this.mirror.replace(reply.image.name, () => reply.image);
      // A name the pull did not write after all: its events were let pass unread.
      if (name !== reply.image.name) void this.mirror.refresh(name);
    }
    return reply;
  }

  async remove(req: Parameters<ImagePort['remove']>[0]): ReturnType<ImagePort['remove']> {
    let reply: Awaited<ReturnType<ImagePort['remove']>>;
    try {
      reply = await this.inner.remove(req);
    } catch (err) {
      if (this.mirror.loaded) void this.mirror.refresh(req.name);
      throw err;
    }
    // Gone once the call returns: nothing to read again (a name kept under another key is re-read).
    if (this.mirror.knows(req.name)) this.mirror.forget(req.name);
    else if (this.mirror.loaded) void this.mirror.refresh(req.name);
    return reply;
  }

  usage(): ReturnType<ImagePort['usage']> {
    return this.inner.usage();
  }
}

/**
 * True when the kept record is the one an update event announces: the write's own updatedAt and
 * chainId (an unpack writes the record again with its chainId, maybe within the same millisecond).
 */
function showsUpdate(cur: ImageRecord | undefined, event: Partial<ImageEvent> | undefined): boolean {
  return (
    cur !== undefined &&
    typeof event?.updatedAt === 'string' &&
    typeof event.chainId === 'string' &&
    cur.updatedAt === event.updatedAt &&
    (cur.chainId ?? '') === event.chainId
  );
}

/**
 * The records newest first, as the image-service lists them (Array.sort is stable: records of the
 * same time keep the view's order); each time is parsed once, not once per comparison.
 */
function newestFirst(records: ImageRecord[]): ImageRecord[] {
  const at = new Map<ImageRecord, number>();
  for (const r of records) at.set(r, Date.parse(r.updatedAt));
  return records.sort((a, b) => (at.get(b) ?? 0) - (at.get(a) ?? 0));
}
