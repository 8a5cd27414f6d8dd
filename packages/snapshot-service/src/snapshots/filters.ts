import { BerthError, Code, type SnapshotInfo } from '@berth/api';

type Clause = { field: string[]; op: '==' | '!=' | '~=' | 'present'; value: string };

function unquote(s: string): string {
  const t = s.trim();
  if (t.length >= 2 && (t[0] === '"' || t[0] === "'" || t[0] === '/') && t[t.length - 1] === t[0])
    return t.slice(1, -1);
  return t;
}

/** Splits `labels."a.b"` into ["labels", "a.b"] (quoted parts keep their dots). */
function fieldPath(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|([^.]+)/g;
  for (let m = re.exec(s.trim()); m; m = re.exec(s.trim())) out.push(m[1] ?? m[2] ?? '');
  return out;
}

function parseClause(c: string, whole: string): Clause {
  const m = /^(.*?)(==|!=|~=)(.*)$/.exec(c);
  const field = fieldPath(m ? (m[1] as string) : c);
  const top = field[0];
  if (
    !top ||
    !['name', 'parent', 'kind', 'labels'].includes(top) ||
    (top === 'labels' && field.length !== 2)
  ) {
    throw new BerthError(
      Code.INVALID_ARGUMENT,
      `invalid snapshot filter "${whole}": unknown field "${c.trim()}"`,
    );
  }
  if (!m) return { field, op: 'present', value: '' };
  return { field, op: m[2] as Clause['op'], value: unquote(m[3] as string) };
}

function fieldValue(info: SnapshotInfo, field: string[]): string | undefined {
  switch (field[0]) {
    case 'name':
      return info.name;
    case 'parent':
      return info.parent;
    case 'kind':
      return info.kind;
    case 'labels':
      return info.labels[field[1] as string];
  }
  return undefined;
}

/**
 * Compiles containerd-style filters: each string is comma-separated clauses that must all hold;
 * a snapshot passes when any string holds (no filters: everything passes).
 */
export function compileFilters(filters: readonly string[] | undefined): (info: SnapshotInfo) => boolean {
  if (!filters || filters.length === 0) return () => true;
  const alts = filters.map((f) =>
    f
      .split(',')
      .filter((c) => c.trim() !== '')
      .map((c) => parseClause(c, f)),
  );
  return (info) =>
    alts.some((clauses) =>
      clauses.every((c) => {
        const v = fieldValue(info, c.field);
        if (c.op === 'present') return v !== undefined;
        if (c.op === '==') return v === c.value;
        if (c.op === '!=') return v !== c.value;
        return v !== undefined && new RegExp(c.value).test(v);
      }),
    );
}
