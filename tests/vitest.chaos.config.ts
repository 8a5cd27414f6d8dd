import { defineConfig } from 'vitest/config';

// The chaos suite alone (tests/chaos): `pnpm --filter @berth/tests run chaos` (long form,
// CHAOS_SECONDS=600 unless set). The short form runs from the default config when it is enabled.
export default defineConfig({
  test: {
    include: ['chaos/**/*.test.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
