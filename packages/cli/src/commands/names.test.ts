import { describe, expect, it } from 'vitest';
import { traceCommands } from '../trace/commands.js';
import { containersCommands } from './containers.js';
import { imagesCommands } from './images.js';
import { networkCommands } from './network.js';
import { snapshotsCommands } from './snapshots.js';
import { stackCommands } from './stack.js';

// Two commands of one name would shadow each other silently: `berth top CONTAINER` (docker's
// process list) once ran the live service view instead, which never exits.
describe('command names', () => {
  it('are unique across every command table', () => {
    const names = [
      ...stackCommands,
      ...imagesCommands,
      ...snapshotsCommands,
      ...containersCommands,
      ...networkCommands,
      ...traceCommands,
    ].map((c) => c.name);
    const twice = names.filter((n, i) => names.indexOf(n) !== i);
    expect(twice).toEqual([]);
    expect(names).toEqual(expect.arrayContaining(['top', 'service top', 'service logs']));
  });
});
