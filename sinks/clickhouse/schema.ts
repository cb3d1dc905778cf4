/** Creates the project's database (if missing) and applies the migrations to it. */
import { join } from 'node:path';
import type { Config } from '../../runtime/config/index.ts';
import { openClickHouse } from './client.ts';
import { httpEngine } from './engine.ts';
import { loadMigrations, migrate, type MigrateResult } from './migrate.ts';

export function migrationsDir(root: string): string {
  return join(root, 'infra/clickhouse/migrations');
}

/** `dir`: a migrations folder of the caller's own (`agent-streams migrate --dir`) instead of this project's. */
export async function migrateDatabase(config: Config, root: string, dir = migrationsDir(root)): Promise<MigrateResult> {
  const server = openClickHouse(config, { database: null });
  try {
    await server.command({ query: `CREATE DATABASE IF NOT EXISTS ${config.clickhouse.database}` });
  } finally {
    await server.close();
  }
  const client = openClickHouse(config);
  try {
    return await migrate(httpEngine(client), loadMigrations(dir));
  } finally {
    await client.close();
  }
}
