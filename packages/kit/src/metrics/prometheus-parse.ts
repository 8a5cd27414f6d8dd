/** One sample of a Prometheus text exposition: metric name, labels and value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Reads `{a="x",b="y"}` starting at `i` (the `{`); returns the labels and the index after `}`. */
function parseLabels(line: string, i: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let pos = i + 1;
  while (pos < line.length && line[pos] !== '}') {
    const eq = line.indexOf('=', pos);
    if (eq < 0 || line[eq + 1] !== '"') throw new Error(`bad label in: ${line}`);
    const key = line.slice(pos, eq).trim();
    let value = '';
    let j = eq + 2;
    for (; j < line.length && line[j] !== '"'; j++) {
      if (line[j] === '\\') {
        j++;
        value += line[j] === 'n' ? '\n' : line[j];
      } else value += line[j];
    }
    labels[key] = value;
    pos = j + 1;
    if (line[pos] === ',') pos++;
  }
  return [labels, pos + 1];
}

/**
 * Parses the Prometheus text exposition format into samples (comments and timestamps dropped).
 * Throws on a line it cannot read, naming it: a scrape that half-parses would mislead `berth top`.
 */
export function parsePrometheusText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = line.slice(0, brace);
      const [l, after] = parseLabels(line, brace);
      labels = l;
      rest = line.slice(after).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = parseValue(rest.split(/\s+/)[0] ?? '');
    if (!name || (Number.isNaN(value) && rest.split(/\s+/)[0] !== 'NaN')) {
      throw new Error(`unreadable metrics line: ${raw}`);
    }
    out.push({ name, labels, value });
  }
  return out;
}

/**
 * The value of quantile `q` (0..1) of a Prometheus histogram from its cumulative `le` buckets,
 * interpolated linearly inside the bucket as Prometheus's histogram_quantile does. NaN without
 * observations.
 */
export function histogramQuantile(q: number, buckets: { le: number; count: number }[]): number {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.at(-1)?.count ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      // The highest finite bound stands for the +Inf bucket, as in Prometheus.
      if (b.le === Number.POSITIVE_INFINITY) return prevLe;
      const inBucket = b.count - prevCount;
      return inBucket <= 0 ? b.le : prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket;
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}
