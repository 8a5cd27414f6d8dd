import { errors } from '@berth/api';
import { DEFAULT_PATH } from './defaults.js';

/**
 * Merges environment lists: later lists override earlier ones by key, keeping first-seen order.
 * PATH gets containerd's default when no list sets it.
 */
export function mergeEnv(...lists: (readonly string[] | undefined | null)[]): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    for (const kv of list ?? []) {
      const eq = kv.indexOf('=');
      const key = eq < 0 ? kv : kv.slice(0, eq);
      if (key.length === 0) throw errors.invalid(`invalid environment variable "${kv}": empty name`);
      // A bare KEY (no "=") is docker's "take it from the caller"; the CLI expands it, here it is empty.
      map.set(key, eq < 0 ? '' : kv.slice(eq + 1));
    }
  }
  if (!map.has('PATH')) map.set('PATH', DEFAULT_PATH);
  return [...map].map(([k, v]) => `${k}=${v}`);
}

/** Reads one variable from a KEY=VALUE list. */
export function envValue(env: readonly string[], key: string): string | undefined {
  const hit = env.find((kv) => kv.startsWith(`${key}=`));
  return hit === undefined ? undefined : hit.slice(key.length + 1);
}
