/**
 * A byte count as docker prints it, in SI units: `999B`, `1.50kB`, `12.3MB`, `218.1MB`, `250MB`
 * (two decimals below 10, one above, a trailing `.0` dropped).
 */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  if (i === 0) return `${v}B`;
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1).replace(/\.0$/, '')}${units[i]}`;
}
