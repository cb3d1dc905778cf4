import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { projectRoot } from '../paths.ts';
import { expectPositionals } from '../args.ts';
import type { Command } from '../main.ts';

export const migrateCommand: Command = {
  summary: 'Apply the ClickHouse migrations in infra/clickhouse/migrations (idempotent)',
  usage: 'migrate',
  options: {},
  async run(args) {
    const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
    expectPositionals('migrate', positionals, []);
    const config = loadConfig();
    const result = await migrateDatabase(config, projectRoot);
    for (const name of result.applied) console.log(`applied  ${name}`);
    console.log(`${result.applied.length} applied, ${result.alreadyApplied.length} already applied (database ${config.clickhouse.database})`);
    return 0;
  },
};
