import { describeSettings, loadConfig, redactConfig } from '../../runtime/config/index.ts';
import type { Command } from '../main.ts';

export const configCommand: Command = {
  summary: 'Validate and print the configuration (secrets redacted); --settings lists every setting',
  usage: 'config [--settings]',
  async run(args) {
    if (args.includes('--settings')) {
      for (const s of describeSettings()) console.log(`${s.env.padEnd(32)} ${s.name.padEnd(28)} ${s.doc} [default: ${JSON.stringify(s.default)}]`);
      return 0;
    }
    console.log(JSON.stringify(redactConfig(loadConfig()), null, 2));
    return 0;
  },
};
