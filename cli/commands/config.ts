import { parseArgs } from 'node:util';
import { describeSettings, loadConfig, redactConfig } from '../../runtime/config/index.ts';
import { checkFormat, dataFormats } from '../format.ts';
import type { Command } from '../main.ts';

const options = { settings: { type: 'boolean', default: false }, format: { type: 'string' } } as const;

export const configCommand: Command = {
  summary: 'Validate and print the configuration (secrets redacted); --settings lists every setting',
  usage: 'config [--format json] | config --settings [--format table|json]',
  options,
  async run(args) {
    const { values } = parseArgs({ args, options });
    if (values.settings) {
      const format = checkFormat(values.format ?? 'table', dataFormats);
      const settings = describeSettings();
      if (format === 'json') console.log(JSON.stringify(settings, null, 2));
      else
        for (const s of settings)
          console.log(`${s.env.padEnd(32)} ${s.name.padEnd(28)} ${s.doc} [default: ${JSON.stringify(s.default)}]`);
      return 0;
    }
    // The configuration is a tree: JSON is its one format.
    checkFormat(values.format ?? 'json', ['json']);
    console.log(JSON.stringify(redactConfig(loadConfig()), null, 2));
    return 0;
  },
};
