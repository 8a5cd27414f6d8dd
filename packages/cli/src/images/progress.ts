import type { PullProgress } from '@berth/api';
import { humanSize } from '../format.js';

type Blob = PullProgress['blobs'][number];

const LABEL: Record<Blob['status'], string> = {
  waiting: 'Waiting',
  downloading: 'Downloading',
  verifying: 'Verifying',
  done: 'Download complete',
  exists: 'Already exists',
  failed: 'Failed',
};

/** Words for a transfer's layer states: `done` (e.g. "Pull complete"), `transfer` (default "Downloading"). */
export interface ProgressVerbs {
  done: string;
  transfer?: string;
}

/**
 * Renders pull/push progress events: on a TTY, one line per layer redrawn in place with a bar,
 * bytes and speed; otherwise a plain line whenever a layer changes status.
 */
export class ProgressView {
  private drawn = 0;
  private readonly lastStatus = new Map<string, string>();
  private readonly speed = new Map<string, { t: number; off: number; bps: number }>();
  private resolvedShown = false;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly tty: boolean,
    private readonly verbs: ProgressVerbs = { done: 'Download complete' },
  ) {}

  update(p: PullProgress): void {
    if (p.digest && !this.resolvedShown && p.phase !== 'resolving') {
      this.resolvedShown = true;
      if (!this.tty) this.out.write(`${p.ref}: resolved ${p.digest}\n`);
    }
    const now = Date.now();
    for (const b of p.blobs) {
      const s = this.speed.get(b.digest);
      if (!s) this.speed.set(b.digest, { t: now, off: b.offset, bps: 0 });
      else if (now - s.t >= 250) {
        s.bps = ((b.offset - s.off) * 1000) / (now - s.t);
        s.t = now;
        s.off = b.offset;
      }
    }
    if (this.tty) this.redraw(p);
    else this.lines(p);
  }

  private label(b: Blob): string {
    if (b.status === 'done') return this.verbs.done;
    if (b.status === 'downloading' && this.verbs.transfer) return this.verbs.transfer;
    return LABEL[b.status];
  }

  private lines(p: PullProgress): void {
    for (const b of p.blobs) {
      const label = this.label(b);
      if (this.lastStatus.get(b.digest) === label) continue;
      this.lastStatus.set(b.digest, label);
      if (b.status === 'waiting') continue;
      this.out.write(`${b.digest.slice(7, 19)}: ${label} (${humanSize(b.size)})\n`);
    }
  }

  private redraw(p: PullProgress): void {
    const rows = p.blobs.map((b) => {
      const head = `${b.digest.slice(7, 19)}: ${this.label(b).padEnd(17)}`;
      if (b.status !== 'downloading') return head;
      const width = 30;
      const frac = b.size > 0 ? Math.min(1, b.offset / b.size) : 1;
      const full = Math.floor(frac * width);
      const bar = `[${'='.repeat(Math.max(0, full - 1))}${full > 0 ? '>' : ''}${' '.repeat(width - full)}]`;
      const bps = this.speed.get(b.digest)?.bps ?? 0;
      return `${head} ${bar} ${humanSize(b.offset)}/${humanSize(b.size)} ${bps > 0 ? `${humanSize(bps)}/s` : ''}`;
    });
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const r of rows) s += `\x1b[2K${r}\n`;
    this.drawn = rows.length;
    this.out.write(s);
  }
}
