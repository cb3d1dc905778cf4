import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { migrateDatabase, migrationsDir } from '../../sinks/clickhouse/schema.ts';
import { migrationsTableOf } from '../../sinks/clickhouse/migrate.ts';
import { projectRoot } from '../paths.ts';
import { expectPositionals, usageError } from '../args.ts';
import type { Command } from '../main.ts';

const options = { dir: { type: 'string' }, scope: { type: 'string' } } as const;

/** A user's folder is recorded under a scope: --scope, else the name in ./package.json, made a table-name suffix. */
function scopeOf(scope: string | undefined): string {
  if (scope !== undefined) return scope;
  const file = resolve('package.json');
  const name = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name : undefined;
  const derived =
    typeof name === 'string'
      ? name
          .toLowerCase()
          .replace(/^@[^/]*\//, '')
          .replace(/[^a-z0-9]+/g, '_')
          .replace(/^[^a-z]+|_+$/g, '')
      : '';
  if (derived === '') throw usageError('migrate --dir needs --scope NAME (no package.json name here to take it from)');
  return derived;
}

export const migrateCommand: Command = {
  summary:
    "Apply ClickHouse migrations (NNNN_name.sql; default: the sink's own, infra/clickhouse/migrations), idempotently",
  usage: 'migrate [--dir DIR [--scope NAME]]',
  options,
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    expectPositionals('migrate', positionals, []);
    if (values.dir === undefined && values.scope !== undefined)
      throw usageError('migrate --scope names the records of a folder of your own: pass --dir DIR with it');
    const dir = values.dir === undefined ? migrationsDir(projectRoot) : resolve(values.dir);
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw usageError(
        `migrations folder ${values.dir} does not exist (looked for ${dir}); pass --dir with your NNNN_name.sql files`,
      );
    const config = loadConfig();
    const folder = values.dir === undefined ? undefined : { dir, scope: scopeOf(values.scope) };
    const result = await migrateDatabase(config, projectRoot, folder);
    for (const name of result.applied) console.log(`applied  ${name}`);
    console.log(
      `${result.applied.length} applied, ${result.alreadyApplied.length} already applied (database ${config.clickhouse.database}` +
        `${folder === undefined ? '' : `, recorded in ${migrationsTableOf(folder.scope)}`})`,
    );
    return 0;
  },
};
