import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // chaos/: the chaos suite's short form (CHAOS_SECONDS=45 unless set); the long form is `pnpm run chaos`.
    include: ['e2e/**/*.test.ts', 'chaos/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
