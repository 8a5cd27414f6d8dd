import type { Command } from '../command.js';

/** The images commands of the CLI. */
export const imagesCommands: Command[] = [];
