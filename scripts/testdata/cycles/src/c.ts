// Control fixture: c closes the cycle back to a with an import type expression and a dynamic import.

/** Part of the cycle a -> b -> c -> a. */
export async function c(): Promise<import('./a.js').A> {
  const mod = await import('./a');
  return { b: mod ? { name: 'c' } : undefined };
}
