#!/usr/bin/env node
// Entry point. In a checkout, TypeScript runs as-is through tsx's loader, so there is no build step to forget; the
// npm package ships no sources, only their build in dist/ (`npm run build`, run by `npm pack`). tsx is registered
// either way: `run`, `topology describe` and `table` load the user's topology, a TypeScript file.
import { existsSync } from 'node:fs';
import { register } from 'tsx/esm/api';

register();
const source = new URL('./main.ts', import.meta.url);
const { main } = await import(existsSync(source) ? source.href : new URL('../dist/cli/main.js', import.meta.url).href);
process.exitCode = await main(process.argv.slice(2));
