import type { Command } from '../command.js';

/** The containers commands of the CLI. */
export const containersCommands: Command[] = [];
