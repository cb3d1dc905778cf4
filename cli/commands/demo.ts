import type { Command } from '../main.ts';

export const demoCommand: Command = {
  summary: 'Run the demo on the local stack',
  usage: 'demo',
  async run() {
    return 0;
  },
};
