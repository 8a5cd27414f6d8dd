import type { Command } from '../command.js';

/** The stack commands of the CLI. */
export const stackCommands: Command[] = [];
