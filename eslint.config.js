// ESLint (flat config) with typescript-eslint's recommended rules, plus the project's import boundaries.
//
// typescript-eslint needs TypeScript 5's JavaScript API; the root's TypeScript is 7 (native, no JS API). It comes
// from tools/ts5, a small package installed apart from the root with its own TypeScript 5 (`npm run lint` runs
// tools/ts5/run, which installs it on first use) — see tools/ts5/README.md. The rules are the syntactic ones (no
// type information): linting with types would build a second, TypeScript 5 program next to `tsc`'s own check.
import { js, tseslint } from './tools/ts5/index.js';

// The public entries of the runtime: what a user's project imports as `agent-streams` and `agent-streams/testing`.
const publicEntry =
  'import the runtime from its public entry, runtime/index.ts (or runtime/testing/index.ts for the test driver), as a user project would';

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      '**/node_modules/',
      'dist/',
      'coverage/',
      'docs/api/',
      '.cache/',
      '.stack/',
      'target/',
      'bench/results/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        fetch: 'readonly',
        performance: 'readonly',
        structuredClone: 'readonly',
        queueMicrotask: 'readonly',
      },
    },
    rules: {
      // `_`-prefixed names are deliberately unused (a callback's position, a destructured field being dropped).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
      // A handle declared first and assigned once it exists, read earlier only by a callback that checks it.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Code built at run time is rare and deliberate here (bounded.ts's generated skipper): each one says why.
      'no-new-func': 'error',
    },
  },
  {
    // The market fleet is written as a user's project would be: the runtime only through its public entries.
    files: ['processors/**/*.ts', 'topologies/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(\\.\\./)+runtime/(?!index\\.ts$|testing/index\\.ts$)',
              message: publicEntry,
            },
          ],
        },
      ],
    },
  },
  {
    // Processors decide, the runtime acts: no I/O clients in processors (STYLE.md). Later in the list, so this entry
    // (the public-entry pattern repeated) is what applies to processors/.
    files: ['processors/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^(\\.\\./)+runtime/(?!index\\.ts$|testing/index\\.ts$)', message: publicEntry },
            {
              group: ['kafkajs', 'ioredis', '@clickhouse/client', '@kafkajs/*'],
              message: 'processors do no I/O: the runtime reads and writes Kafka, Redis and ClickHouse',
            },
          ],
        },
      ],
    },
  },
);
