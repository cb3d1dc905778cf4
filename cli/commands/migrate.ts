import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { migrateDatabase, migrationsDir } from '../../sinks/clickhouse/schema.ts';
import { projectRoot } from '../paths.ts';
import { expectPositionals, usageError } from '../args.ts';
import type { Command } from '../main.ts';

const options = { dir: { type: 'string' } } as const;

export const migrateCommand: Command = {
  summary:
    "Apply ClickHouse migrations (NNNN_name.sql; default: the sink's own, infra/clickhouse/migrations), idempotently",
  usage: 'migrate [--dir DIR]',
  options,
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    expectPositionals('migrate', positionals, []);
    const dir = values.dir === undefined ? migrationsDir(projectRoot) : resolve(values.dir);
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw usageError(
        `migrations folder ${values.dir} does not exist (looked for ${dir}); pass --dir with your NNNN_name.sql files`,
      );
    const config = loadConfig();
    const result = await migrateDatabase(config, projectRoot, dir);
    for (const name of result.applied) console.log(`applied  ${name}`);
    console.log(
      `${result.applied.length} applied, ${result.alreadyApplied.length} already applied (database ${config.clickhouse.database})`,
    );
    return 0;
  },
};
