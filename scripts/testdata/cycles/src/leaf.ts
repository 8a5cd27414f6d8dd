// Control fixture: imported but importing nothing, so no part of any cycle.

/** A value other fixture modules import. */
export const leaf = 1;
