import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/setup/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Forks, not threads: the Prisma client, pg pools and spawned processes behave like production.
    pool: 'forks',
    fileParallelism: true,
    // Two cores on CI; every worker also clones a database per test.
    maxWorkers: 2,
  },
});
