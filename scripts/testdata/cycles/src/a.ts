// Control fixture for scripts/check-cycles.mjs: a -> b -> c -> a, through three kinds of edge.
import type { B } from './b.js';

/** Part of the cycle through a type-only import. */
export interface A {
  b?: B;
}
