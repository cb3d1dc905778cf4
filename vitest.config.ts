import { defineConfig } from 'vitest/config';

// The integration tests share one real local stack (started once by the global setup), and the machine has
// two cores: files run one at a time so that timings and broker load stay predictable.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/setup/stack.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 300_000,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
