/**
 * Standalone vitest config for the fake-Discord tests (no globalSetup, no database/Redis):
 * `npx vitest run tests/fakes/discord.test.ts --config tests/fakes/discord/vitest.standalone.config.ts`
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../../..', import.meta.url)),
    include: ['tests/fakes/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
