import { defineConfig } from 'vitest/config';

// Tests import the packages by name, so they exercise the built dist/ output
// (`npm test` runs `tsc -b` first). Cross-process tests spawn compiled
// fixtures from test/dist. Forks isolate native SQLite handles per file.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['**/node_modules/**', '**/dist/**'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
