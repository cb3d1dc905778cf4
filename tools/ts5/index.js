// Re-exported from here so that eslint.config.js, at the repository root, gets the copies installed in this
// folder: their `require('typescript')` finds this folder's TypeScript 5, not the root's TypeScript 7 (README.md).
export { default as js } from '@eslint/js';
export { default as tseslint } from 'typescript-eslint';
