import { BerthError, Code } from '@berth/api/errors';
import { describe, expect, it } from 'vitest';
import { splitGlobalOptions } from './global-options.js';

describe('splitGlobalOptions', () => {
  it('takes -n/--namespace off the front, in every spelling, the last one winning', () => {
    expect(splitGlobalOptions(['-n', 'k8s.io', 'ps', '-a'])).toEqual({
      globals: { namespace: 'k8s.io' },
      rest: ['ps', '-a'],
    });
    expect(splitGlobalOptions(['--namespace', 'a', 'images']).globals.namespace).toBe('a');
    expect(splitGlobalOptions(['--namespace=b', 'images']).globals.namespace).toBe('b');
    expect(splitGlobalOptions(['-nc', 'images']).globals.namespace).toBe('c');
    expect(splitGlobalOptions(['-n', 'a', '-n', 'z', 'ps']).globals.namespace).toBe('z');
  });

  it("leaves a command's own -n alone, and argv without globals as it is", () => {
    expect(splitGlobalOptions(['logs', '-n', '10', 'web'])).toEqual({
      globals: {},
      rest: ['logs', '-n', '10', 'web'],
    });
    expect(splitGlobalOptions([])).toEqual({ globals: {}, rest: [] });
    expect(splitGlobalOptions(['-n', 'x', '--help']).rest).toEqual(['--help']);
  });

  it('refuses a missing or invalid namespace with INVALID_ARGUMENT naming it', () => {
    const fails = (argv: string[]) => {
      try {
        splitGlobalOptions(argv);
      } catch (err) {
        expect(err).toBeInstanceOf(BerthError);
        expect((err as BerthError).code).toBe(Code.INVALID_ARGUMENT);
        return (err as Error).message;
      }
      throw new Error(`${argv.join(' ')} was accepted`);
    };
    expect(fails(['-n'])).toContain('-n needs a namespace name');
    expect(fails(['--namespace', '../etc', 'ps'])).toContain('invalid namespace "../etc"');
    expect(fails(['--namespace=', 'ps'])).toContain('invalid namespace ""');
  });
});
