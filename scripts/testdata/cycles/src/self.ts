// Control fixture: a module that imports itself is a cycle of one.
import * as self from './self.js';

/** Names this module through its own import. */
export const selfName = typeof self;
