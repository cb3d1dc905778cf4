import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root: the CLI may be started from any working directory. */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
