/** Creates the project's database (if missing) and applies the migrations to it. */
import { join } from 'node:path';
import type { Config } from '../../runtime/config/index.ts';
import { openClickHouse } from './client.ts';
import { httpEngine } from './engine.ts';
import { loadMigrations, migrate, migrationsTableOf, type MigrateResult } from './migrate.ts';

export function migrationsDir(root: string): string {
  return join(root, 'infra/clickhouse/migrations');
}

/**
 * `folder`: a migrations folder of the caller's own (`agent-streams migrate --dir DIR --scope NAME`) instead of this
 * package's, recorded in its own table (`schema_migrations_NAME`).
 */
export async function migrateDatabase(
  config: Config,
  root: string,
  folder?: { dir: string; scope: string },
): Promise<MigrateResult> {
  const dir = folder?.dir ?? migrationsDir(root);
  const table = folder === undefined ? undefined : migrationsTableOf(folder.scope);
  const server = openClickHouse(config, { database: null });
  try {
    await server.command({ query: `CREATE DATABASE IF NOT EXISTS ${config.clickhouse.database}` });
  } finally {
    await server.close();
  }
  const client = openClickHouse(config);
  try {
    return await migrate(httpEngine(client), loadMigrations(dir), { table });
  } finally {
    await client.close();
  }
}
