/**
 * Lists the keys of a JSON object line (one log line) in order, duplicates kept: JSON.parse keeps
 * only the last of two equal keys, so a line that writes one key twice (a logger's field over a
 * binding of the same name) looks fine once parsed. Keys of nested objects are not listed.
 */
export function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      // A string ends at the next quote not escaped by a backslash (or, cut short, at the end).
      while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && line[j + 1] === ':') keys.push(line.slice(i + 1, j));
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}
