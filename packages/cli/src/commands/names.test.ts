import { describe, expect, it } from 'vitest';
import { commands } from '../cli.js';

// Two commands of one name would shadow each other silently: `berth top CONTAINER` (docker's
// process list) once ran the live service view instead, which never exits.
describe('command names', () => {
  it('are unique across every command table', () => {
    const names = commands.map((c) => c.name);
    const twice = names.filter((n, i) => names.indexOf(n) !== i);
    expect(twice).toEqual([]);
    expect(names).toEqual(expect.arrayContaining(['top', 'service top', 'service logs']));
  });
});
