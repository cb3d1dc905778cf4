import { spawnSync } from 'node:child_process';
import { projectRoot } from '../paths.ts';
import type { Command } from '../main.ts';

export const testCommand: Command = {
  summary: 'Run the test suite against the real local stack (started if it is not running, stopped again after)',
  usage: 'test [vitest arguments…]',
  async run(args) {
    const result = spawnSync(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...args], {
      cwd: projectRoot,
      stdio: 'inherit',
    });
    return result.status ?? 1;
  },
};
