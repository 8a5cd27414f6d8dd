import { existsSync } from 'node:fs';
import type { Mount, SnapshotKind } from '@berth/api';

let indexOff: boolean | undefined;

/** True when the kernel's overlay has the `index` option (then berth mounts with index=off, as containerd). */
export function overlaySupportsIndex(): boolean {
  indexOff ??= existsSync('/sys/module/overlay/parameters/index');
  return indexOff;
}

/**
 * The mounts of a snapshot by containerd's overlay rules: a bind of its own fs when it has no
 * parents (ro for a view), a ro bind of the parent's fs for a view of one parent, else overlay
 * with lowerdir = parents nearest first, plus upperdir/workdir when active.
 */
export function mountsFor(s: {
  kind: SnapshotKind;
  fs: string;
  work: string;
  parentFs: readonly string[];
}): Mount[] {
  if (s.parentFs.length === 0) {
    return [{ type: 'bind', source: s.fs, options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
  }
  const options: string[] = [];
  if (overlaySupportsIndex()) options.push('index=off');
  if (s.kind === 'active') {
    options.push(`workdir=${s.work}`, `upperdir=${s.fs}`);
  } else if (s.parentFs.length === 1) {
    return [{ type: 'bind', source: s.parentFs[0] as string, options: ['ro', 'rbind'] }];
  }
  options.push(`lowerdir=${s.parentFs.join(':')}`);
  return [{ type: 'overlay', source: 'overlay', options }];
}
