import type { SpanRecord } from '@berth/kit/tracing';
import type { StoredTrace } from './select.js';

const KIND = ['', 'server', 'client', 'producer', 'consumer'] as const;
const STATUS = ['-', 'OK', 'ERROR'] as const;

/** A duration in µs as a short human figure: `830µs`, `12.4ms`, `1.52s`. */
export function shortDuration(us: number): string {
  // Spans of one trace come from several processes; a clock step must not print "-3µs".
  if (us < 0) return '0µs';
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)}ms`;
  return `${(us / 1_000_000).toFixed(2)}s`;
}

/** Spans in tree order (children after their parent, by start time) with their depth. */
export function treeOrder(spans: SpanRecord[]): { span: SpanRecord; depth: number; orphan: boolean }[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, SpanRecord[]>();
  const tops: SpanRecord[] = [];
  for (const s of spans) {
    if (s.parentSpanId && ids.has(s.parentSpanId)) {
      const list = children.get(s.parentSpanId);
      if (list) list.push(s);
      else children.set(s.parentSpanId, [s]);
    } else tops.push(s);
  }
  const byStart = (a: SpanRecord, b: SpanRecord) => a.startUs - b.startUs || a.endUs - b.endUs;
  const out: { span: SpanRecord; depth: number; orphan: boolean }[] = [];
  const visit = (s: SpanRecord, depth: number) => {
    out.push({ span: s, depth, orphan: depth === 0 && s.parentSpanId !== '' });
    for (const c of (children.get(s.spanId) ?? []).sort(byStart)) visit(c, depth + 1);
  };
  // Roots first, then spans whose parent is not in the store (not written yet, or rotated away).
  tops.sort((a, b) => Number(a.parentSpanId !== '') - Number(b.parentSpanId !== '') || byStart(a, b));
  for (const t of tops) visit(t, 0);
  return out;
}

/** What a span's line adds after its name: exit status, error code, bytes, link. */
function detail(s: SpanRecord): string {
  const a = s.attributes;
  const parts: string[] = [];
  if (a['process.exit.code'] !== undefined) parts.push(`exit=${a['process.exit.code']}`);
  if (a['http.response.status_code'] !== undefined) parts.push(`http=${a['http.response.status_code']}`);
  if (a['berth.error_code'] !== undefined) parts.push(String(a['berth.error_code']));
  if (s.links.length) parts.push('linked');
  return parts.length ? ` [${parts.join(' ')}]` : '';
}

/** Options of the drawing. */
export interface WaterfallOptions {
  /** Width of the bar column in characters. */
  barWidth?: number;
  /** Width of the span column (names are cut to fit). */
  nameWidth?: number;
}

/**
 * Draws a trace as a terminal waterfall: one line per span in tree order with its service, name
 * (indented by depth, kind and detail appended), start offset from the trace's start, duration,
 * status, and a bar placing it on the trace's time line.
 */
export function renderWaterfall(t: StoredTrace, o: WaterfallOptions = {}): string {
  const barWidth = o.barWidth ?? 40;
  const nameWidth = o.nameWidth ?? 52;
  const total = Math.max(1, t.endUs - t.startUs);
  const rows = treeOrder(t.spans);
  const services = new Set(t.spans.map((s) => s.service));
  const svcWidth = Math.max(7, ...[...services].map((s) => s.length));
  const errorsCount = t.spans.filter((s) => s.status.code === 2).length;
  const head =
    `trace ${t.traceId}  ${t.root?.name ?? '(root not recorded)'}  ${shortDuration(total)}  ` +
    `${t.spans.length} spans, ${services.size} services${errorsCount ? `, ${errorsCount} failed` : ''}\n`;
  const cols = `${'SERVICE'.padEnd(svcWidth)}  ${'SPAN'.padEnd(nameWidth)}  ${'START'.padStart(8)}  ${'DURATION'.padStart(8)}  STATUS\n`;
  const lines = rows.map(({ span: s, depth, orphan }) => {
    const kind = KIND[s.kind] ? ` (${KIND[s.kind]})` : '';
    let name = `${'  '.repeat(Math.min(depth, 12))}${orphan ? '? ' : ''}${s.name}${kind}${detail(s)}`;
    if (name.length > nameWidth) name = `${name.slice(0, nameWidth - 1)}…`;
    const from = Math.min(barWidth - 1, Math.floor(((s.startUs - t.startUs) / total) * barWidth));
    const len = Math.max(
      1,
      Math.min(barWidth - from, Math.round(((s.endUs - s.startUs) / total) * barWidth)),
    );
    const bar = `${' '.repeat(from)}${(s.status.code === 2 ? '▒' : '█').repeat(len)}`.padEnd(barWidth);
    const status = STATUS[s.status.code] ?? '-';
    return (
      `${s.service.padEnd(svcWidth)}  ${name.padEnd(nameWidth)}  ${shortDuration(s.startUs - t.startUs).padStart(8)}  ` +
      `${shortDuration(s.endUs - s.startUs).padStart(8)}  ${status.padEnd(5)}  |${bar}|`
    );
  });
  // One line per distinct failure, naming where it happened first (the deepest span, since an
  // error travels up through every caller with the same message).
  const byMessage = new Map<string, string[]>();
  for (const { span: s } of [...rows].reverse()) {
    if (s.status.code !== 2 || !s.status.message) continue;
    byMessage.set(s.status.message, [...(byMessage.get(s.status.message) ?? []), `${s.service} ${s.name}`]);
  }
  const failed = [...byMessage].map(
    ([message, where]) =>
      `  ${where[0]}${where.length > 1 ? ` (and ${where.length - 1} caller${where.length > 2 ? 's' : ''})` : ''}: ${message}`,
  );
  const orphans = rows.filter((r) => r.orphan).length;
  const notes = [
    ...(failed.length ? ['', 'errors:', ...failed] : []),
    ...(orphans
      ? ['', `? ${orphans} span(s) whose parent is not in the store (still being written, or rotated away)`]
      : []),
  ];
  return `${head}${cols}${lines.join('\n')}\n${notes.length ? `${notes.join('\n')}\n` : ''}`;
}

/** The list `berth trace` prints without arguments: newest traces first. */
export function renderTraceList(traces: StoredTrace[], limit = 20): string {
  // Health probes (`info`, every few seconds from the supervisor) would push everything else out.
  const shown = traces.filter((t) => !t.root?.name.endsWith('/info') || t.spans.length > 1);
  const rows = shown.slice(0, limit).map((t) => {
    const when = new Date(t.startUs / 1000).toISOString().replace('T', ' ').slice(0, 23);
    const status = t.spans.some((s) => s.status.code === 2) ? 'ERROR' : 'OK';
    return `${t.traceId}  ${when}  ${shortDuration(t.endUs - t.startUs).padStart(8)}  ${String(t.spans.length).padStart(5)}  ${status.padEnd(5)}  ${t.root?.name ?? '?'}`;
  });
  return `${'TRACE ID'.padEnd(32)}  ${'STARTED (UTC)'.padEnd(23)}  ${'DURATION'.padStart(8)}  SPANS  STATUS  ROOT\n${rows.join('\n')}${rows.length ? '\n' : ''}`;
}
