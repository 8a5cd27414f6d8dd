import { createRequire } from 'node:module';

/**
 * A loader of the shim's optional native addon build/NAME.node (native/NAME.c): the addon, or
 * null when it is not built, in which case callers do the same work without it. Loaded once, at
 * the first call.
 */
export function optionalAddon<T>(name: string): () => T | null {
  let addon: T | null | undefined;
  return () => {
    if (addon === undefined) {
      try {
        addon = createRequire(import.meta.url)(`../../build/${name}.node`) as T;
      } catch {
        addon = null;
      }
    }
    return addon;
  };
}
