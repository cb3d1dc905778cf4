/**
 * Versioned migrations: `infra/clickhouse/migrations/NNNN_name.sql`, applied in order, each recorded with its
 * checksum in `schema_migrations`. An applied file must never change: a checksum mismatch stops the run.
 * ClickHouse 18.16 takes one statement per request, so files are split on `;` at the end of a line.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';

export interface Migration {
  version: number;
  name: string;
  checksum: string;
  statements: string[];
}

export function splitStatements(sql: string): string[] {
  const withoutComments = sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n');
  return withoutComments
    .split(/;[ \t]*(?:\n|$)/)
    .map((statement) => statement.trim())
    .filter((statement) => statement !== '');
}

export function loadMigrations(dir: string): Migration[] {
  const migrations = readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .sort()
    .map((file) => {
      const match = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
      if (!match) {
        throw new AgentStreamsError(
          ErrorCode.MIGRATION_FAILED,
          `Migration file ${file} must be named NNNN_name.sql (lower case).`,
        );
      }
      const text = readFileSync(join(dir, file), 'utf8');
      return {
        version: Number(match[1]),
        name: match[2]!,
        checksum: createHash('sha256').update(text).digest('hex').slice(0, 16),
        statements: splitStatements(text),
      };
    });
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new AgentStreamsError(
        ErrorCode.MIGRATION_FAILED,
        `Migrations must be numbered 0001, 0002, … without gaps; found ${String(m.version).padStart(4, '0')} at position ${i + 1}.`,
      );
    }
  });
  return migrations;
}

/** What the runner needs from an engine: the ClickHouse server over HTTP, or chdb in process. */
export interface SqlEngine {
  exec(sql: string): Promise<void>;
  rows<T>(sql: string): Promise<T[]>;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

/** The package's own migrations record themselves here; their 0001 creates it. */
export const PACKAGE_MIGRATIONS_TABLE = 'schema_migrations';

/**
 * Where a user's folder of migrations (`agent-streams migrate --dir DIR --scope NAME`) records itself: a table of
 * its own, so its 0001 never meets the package's 0001 and the two sequences number independently.
 */
export function migrationsTableOf(scope: string): string {
  if (!/^[a-z][a-z0-9_]{0,47}$/.test(scope)) {
    throw new AgentStreamsError(
      ErrorCode.MIGRATION_FAILED,
      `Migration scope "${scope}" must be lower-case letters, digits and underscores, starting with a letter (at most 48).`,
    );
  }
  return `schema_migrations_${scope}`;
}

export interface MigrateOptions {
  /** The table applied versions are recorded in: the package's own (default), or `migrationsTableOf(scope)`. */
  table?: string;
  now?: () => Date;
}

export async function migrate(
  engine: SqlEngine,
  migrations: Migration[],
  options: MigrateOptions = {},
): Promise<MigrateResult> {
  const table = options.table ?? PACKAGE_MIGRATIONS_TABLE;
  const now = options.now ?? (() => new Date());
  const [bootstrap] = migrations;
  if (!bootstrap) return { applied: [], alreadyApplied: [] };
  if (table === PACKAGE_MIGRATIONS_TABLE) {
    // The package's first migration creates schema_migrations itself (IF NOT EXISTS), so it is safe to run every time.
    for (const statement of bootstrap.statements) await engine.exec(statement);
  } else {
    // A user's folder: the runner creates its records table, with the same shape as the package's.
    await engine.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (version UInt32, name String, checksum String, applied_at DateTime('UTC')) ` +
        'ENGINE = ReplacingMergeTree(applied_at) ORDER BY version',
    );
  }
  const recorded = new Map(
    (await engine.rows<{ version: number; checksum: string }>(`SELECT version, checksum FROM ${table} FINAL`)).map(
      (r) => [Number(r.version), r.checksum],
    ),
  );
  const result: MigrateResult = { applied: [], alreadyApplied: [] };
  for (const migration of migrations) {
    const label = `${String(migration.version).padStart(4, '0')}_${migration.name}`;
    const checksum = recorded.get(migration.version);
    if (checksum !== undefined) {
      if (checksum !== migration.checksum) {
        throw new AgentStreamsError(
          ErrorCode.MIGRATION_FAILED,
          `Migration ${label} was applied with checksum ${checksum} but the file now has ${migration.checksum}. ` +
            'Applied migrations must not change: revert the edit and add a new migration instead.',
        );
      }
      result.alreadyApplied.push(label);
      continue;
    }
    for (const statement of migration.statements) {
      try {
        await engine.exec(statement);
      } catch (error) {
        throw new AgentStreamsError(
          ErrorCode.MIGRATION_FAILED,
          `Migration ${label} failed: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    const appliedAt = Math.floor(now().getTime() / 1000);
    await engine.exec(
      `INSERT INTO ${table} (version, name, checksum, applied_at) VALUES (${migration.version}, '${migration.name}', '${migration.checksum}', toDateTime(${appliedAt}, 'UTC'))`,
    );
    result.applied.push(label);
  }
  return result;
}
