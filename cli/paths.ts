import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The project root (where package.json is): the CLI may be started from any working directory. It runs from `cli/`
 * in a checkout and from `dist/cli/` in the installed package.
 */
export const projectRoot = existsSync(join(here, '..', 'package.json'))
  ? resolve(here, '..')
  : resolve(here, '..', '..');
