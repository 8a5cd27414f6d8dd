import type { ContainerInfo } from '@berth/api';

/** What the STATUS column reads: a listing's summary or a whole record. */
type StatusOf = Pick<ContainerInfo, 'status' | 'task'>;

/** "3 seconds", "2 minutes", "5 hours": docker's human durations. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 1) return 'Less than a second';
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'}`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'}`;
  const d = Math.round(h / 24);
  return `${d} days`;
}

/** The STATUS column of `ps`: Created, Up 3 seconds, Exited (0) 2 minutes ago, Paused. */
export function statusText(i: StatusOf, now = Date.now()): string {
  const t = i.task;
  switch (i.status) {
    case 'running':
      return `Up ${humanDuration(now - Date.parse(t?.startedAt ?? t?.createdAt ?? new Date(now).toISOString()))}`;
    case 'paused':
      return `Up ${humanDuration(now - Date.parse(t?.startedAt ?? new Date(now).toISOString()))} (Paused)`;
    case 'stopped':
      return `Exited (${t?.exitCode ?? '?'}) ${humanDuration(now - Date.parse(t?.exitedAt ?? new Date(now).toISOString()))} ago`;
    case 'created':
      return 'Created';
    default:
      return 'Unknown';
  }
}

/** Renders rows as left-aligned columns separated by three spaces. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
        .join('   ')
        .trimEnd(),
    )
    .join('\n')
    .concat(rows.length ? '\n' : '');
}

/** The COMMAND column: the process's args, quoted and cut to 20 characters as docker does. */
export function commandText(command: readonly string[]): string {
  const args = command.join(' ');
  const cut = args.length > 20 ? `${args.slice(0, 19)}…` : args;
  return `"${cut}"`;
}
