import type { Command } from '../command.js';
import { snapshotCommandList } from '../snapshots/commands.js';

/** The snapshots commands of the CLI: snapshot ls|info|usage|rm|mounts, mount, unmount, image unpack. */
export const snapshotsCommands: Command[] = snapshotCommandList;
