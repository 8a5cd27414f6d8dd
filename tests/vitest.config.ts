import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // chaos/: the chaos suite's short form (CHAOS_SECONDS=45 unless set); the long form is `pnpm run chaos`.
    include: ['e2e/**/*.test.ts', 'chaos/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two files at once, as the packages' suites with real containers run: every file starts a
    // stack of its own (own root, ports, node id, CNI bridge and subnet), so none shares state
    // with another, and a stack mostly waits (process starts, exits, timeouts), leaving a core
    // idle when files run one by one. tests/ in CI (2 cores): 339 s instead of 554 s.
    maxWorkers: 2,
  },
});
