import { errors } from '@berth/api/errors';
import type { SpanRecord } from '@berth/kit/tracing';

/** One trace from the span store: its spans and its root (the earliest span without a parent). */
export interface StoredTrace {
  traceId: string;
  spans: SpanRecord[];
  root: SpanRecord | undefined;
  startUs: number;
  endUs: number;
}

/** Groups spans by trace, newest trace (by start) first. */
export function groupTraces(spans: SpanRecord[]): StoredTrace[] {
  const byId = new Map<string, SpanRecord[]>();
  const seen = new Set<string>();
  for (const s of spans) {
    // A batch written twice (a retry after a failed write) must not double a span.
    const key = `${s.traceId}/${s.spanId}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const list = byId.get(s.traceId);
    if (list) list.push(s);
    else byId.set(s.traceId, [s]);
  }
  const out: StoredTrace[] = [];
  for (const [traceId, list] of byId) {
    const roots = list.filter((s) => !s.parentSpanId).sort((a, b) => a.startUs - b.startUs);
    out.push({
      traceId,
      spans: list,
      root: roots[0],
      startUs: Math.min(...list.map((s) => s.startUs)),
      endUs: Math.max(...list.map((s) => s.endUs)),
    });
  }
  return out.sort((a, b) => b.startUs - a.startUs);
}

/** The trace a CLI command made: its root span is the command's (`berth ...`). */
const isCommand = (t: StoredTrace) => t.root?.name.startsWith('berth ') === true;
/** `berth trace` itself is never "the last command" the user asks about. */
const isTraceCommand = (t: StoredTrace) => t.root?.name === 'berth trace';

/** What to show: a trace id (or a unique prefix of at least 4 digits), the last command, or an operation. */
export type TraceQuery = { id: string } | { last: true } | { op: string };

/**
 * Picks one trace: by id or unique id prefix; the newest CLI command (`--last`); the newest
 * trace whose root is the operation (`--op run` matches `berth run`, `--op image-service/pull`
 * a trace rooted in that server span). NOT_FOUND naming what was asked when nothing matches.
 */
export function selectTrace(traces: StoredTrace[], q: TraceQuery): StoredTrace {
  if ('id' in q) {
    const id = q.id.toLowerCase();
    if (!/^[0-9a-f]{4,32}$/.test(id)) {
      throw errors.invalid(`trace id "${q.id}" must be 4 to 32 hexadecimal digits`);
    }
    const found = traces.filter((t) => t.traceId.startsWith(id));
    if (found.length > 1) {
      throw errors.invalid(`trace id prefix "${q.id}" is ambiguous: it matches ${found.length} traces`);
    }
    if (!found[0]) throw errors.notFound(`trace "${q.id}" not found in the span store`);
    return found[0];
  }
  if ('last' in q) {
    const t = traces.find((x) => isCommand(x) && !isTraceCommand(x));
    if (!t) throw errors.notFound('no command trace in the span store yet');
    return t;
  }
  const op = q.op;
  const t = traces.find((x) => {
    const name = x.root?.name ?? '';
    return name === op || name === `berth ${op}` || name.endsWith(`/${op}`);
  });
  if (!t) throw errors.notFound(`no trace of operation "${op}" in the span store`);
  return t;
}
