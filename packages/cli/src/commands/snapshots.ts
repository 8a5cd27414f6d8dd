import type { Command } from '../command.js';

/** The snapshots commands of the CLI. */
export const snapshotsCommands: Command[] = [];
