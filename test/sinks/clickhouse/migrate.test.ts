import { mkdtempSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { httpEngine } from '../../../sinks/clickhouse/engine.ts';
import { loadMigrations, migrate } from '../../../sinks/clickhouse/migrate.ts';
import { migrateDatabase, migrationsDir } from '../../../sinks/clickhouse/schema.ts';
import { namedQuerySql } from '../../../sinks/clickhouse/queries.ts';
import { ErrorCode } from '../../../runtime/errors.ts';
import { config, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');

describe('ClickHouse migrations and batched inserts on the local server', () => {
  const database = uniqueName('as_test');
  const testConfig = { ...config, clickhouse: { ...config.clickhouse, database } };
  let client: ClickHouseClient;

  beforeAll(async () => {
    const result = await migrateDatabase(testConfig, root);
    expect(result.applied).toHaveLength(loadMigrations(migrationsDir(root)).length);
    client = openClickHouse(testConfig);
  });
  afterAll(async () => {
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('is idempotent', async () => {
    const again = await migrateDatabase(testConfig, root);
    expect(again.applied).toEqual([]);
    const tables = await (
      await client.query({
        query: 'SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name',
        format: 'JSONEachRow',
      })
    ).json<{ name: string }>();
    expect(tables.map((t) => t.name)).toEqual(['alerts', 'digests', 'findings', 'llm_calls', 'schema_migrations']);
  });

  it('inserts a batch of 10,000 findings in one request and reads them back through a named query', async () => {
    const base = 1_767_225_600;
    const rows = Array.from({ length: 10_000 }, (_, i) => ({
      finding_id: `f-${i}`,
      agent: i % 2 ? 'volume-spike' : 'price-move',
      rule: 'r',
      symbol: `S${i % 50}`,
      portfolio_id: i % 4 === 0 ? 'growth' : 'income',
      severity: i % 10 === 0 ? 'high' : 'low',
      window_start: base + (i % 3600),
      window_end: base + (i % 3600) + 60,
      event_time: base + (i % 3600),
      event_time_ms: (base + (i % 3600)) * 1000,
      evidence: '{"return":-0.06}',
      source_topic: 'signals.price',
      source_partition: i % 6,
      source_offset: i,
      created_at: base + 4000,
      version: 1,
    }));
    await client.insert({ table: 'findings', values: rows, format: 'JSONEachRow' });
    // A retried insert of the same rows (as after a crash) must not be visible twice.
    await client.insert({
      table: 'findings',
      values: rows.slice(0, 1000).map((r) => ({ ...r, version: 2 })),
      format: 'JSONEachRow',
    });

    const counts = await (
      await client.query({
        query: namedQuerySql('severityCounts', { portfolio: 'growth', from: base, to: base + 7200 }),
        format: 'JSONEachRow',
      })
    ).json<{ agent: string; severity: string; findings: number }>();
    expect(counts.reduce((sum, r) => sum + Number(r.findings), 0)).toBe(2500);
    const high = await (
      await client.query({
        query: namedQuerySql('findingsByPortfolio', {
          portfolio: 'growth',
          from: base,
          to: base + 7200,
          minSeverity: 'high',
          limit: 10_000,
        }),
        format: 'JSONEachRow',
      })
    ).json<{ severity: string }>();
    expect(high).toHaveLength(500);
    expect(high.every((r) => r.severity === 'high')).toBe(true);
  });

  it('refuses to continue when an applied migration was edited', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-migrations-'));
    for (const file of readdirSync(migrationsDir(root))) copyFileSync(join(migrationsDir(root), file), join(dir, file));
    const first = readdirSync(dir).sort()[1]!;
    writeFileSync(join(dir, first), `-- edited\n${readdirSync(dir).length}`, { flag: 'a' });
    const error = await migrate(httpEngine(client), loadMigrations(dir)).catch((e: unknown) => e);
    expect((error as { code: string }).code).toBe(ErrorCode.MIGRATION_FAILED);
    expect((error as Error).message).toMatch(/was applied with checksum .* but the file now has/);
  });

  it("keeps a user's folder of migrations in its own records table, beside the package's and in a fresh database", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-user-migrations-'));
    writeFileSync(
      join(dir, '0001_pages.sql'),
      'CREATE TABLE IF NOT EXISTS pages\n(\n    page String,\n    views UInt64\n)\nENGINE = ReplacingMergeTree\nORDER BY page;\n',
    );
    writeFileSync(
      join(dir, '0002_popular.sql'),
      'CREATE TABLE IF NOT EXISTS popular (page String) ENGINE = MergeTree ORDER BY page;\n',
    );
    const count = async (sql: string): Promise<number> =>
      Number((await (await client.query({ query: sql, format: 'JSONEachRow' })).json<{ n: string }>())[0]!.n);
    const packageRecords = await count('SELECT count() AS n FROM schema_migrations FINAL');

    // Beside the package's migrations: its 0001 is not the package's 0001.
    const first = await migrateDatabase(testConfig, root, { dir, scope: 'pages_app' });
    expect(first.applied).toEqual(['0001_pages', '0002_popular']);
    expect(await count('SELECT count() AS n FROM schema_migrations_pages_app FINAL')).toBe(2);
    expect(await count('SELECT count() AS n FROM schema_migrations FINAL')).toBe(packageRecords);
    expect(
      await count(
        "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name IN ('pages', 'popular')",
      ),
    ).toBe(2);
    const again = await migrateDatabase(testConfig, root, { dir, scope: 'pages_app' });
    expect(again).toEqual({ applied: [], alreadyApplied: ['0001_pages', '0002_popular'] });
    // The package's own sequence is untouched by the user's.
    expect((await migrateDatabase(testConfig, root)).applied).toEqual([]);

    // In a database the package never migrated.
    const fresh = uniqueName('as_test_user');
    const freshConfig = { ...config, clickhouse: { ...config.clickhouse, database: fresh } };
    try {
      expect((await migrateDatabase(freshConfig, root, { dir, scope: 'pages_app' })).applied).toEqual([
        '0001_pages',
        '0002_popular',
      ]);
    } finally {
      await client.command({ query: `DROP DATABASE IF EXISTS ${fresh}` });
    }

    const error = await migrateDatabase(testConfig, root, { dir, scope: 'Pages-App' }).catch((e: unknown) => e);
    expect((error as { code: string }).code).toBe(ErrorCode.MIGRATION_FAILED);
    expect((error as Error).message).toMatch(/Migration scope "Pages-App" must be lower-case/);
  });
});
