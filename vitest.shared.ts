import { defineConfig } from 'vitest/config';

/**
 * The vitest config of the tests in a package's src/. `maxWorkers`: how many test files
 * run at once. vitest's default on this project's 2-core machines is 1, which leaves a core idle
 * through tests that mostly wait (timeouts, process exits); packages whose tests run real
 * containers take 2, the others 3.
 */
export function packageTestConfig(maxWorkers: 2 | 3) {
  return defineConfig({
    test: {
      include: ['src/**/*.test.ts'],
      testTimeout: 60_000,
      hookTimeout: 60_000,
      pool: 'forks',
      maxWorkers,
    },
  });
}
