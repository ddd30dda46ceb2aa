import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Training and end-to-end tests run real work on 2-core machines.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
