// Control fixture: imports into the cycle and a leaf but is imported by none, so no part of a cycle.
import type { A } from './a.js';
import { leaf } from './leaf.js';

/** Uses what it imports. */
export const root: A & { leaf: number } = { leaf };
