import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores on CI: keep worker count modest so timing-sensitive server tests stay stable.
    maxWorkers: 2,
  },
});
