// Control fixture: b re-exports from c (an export-from edge).
export { c } from './c.js';

/** Part of the cycle a -> b -> c -> a. */
export type B = { name: string };
