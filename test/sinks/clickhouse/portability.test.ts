/**
 * The SQL must run on current ClickHouse as well as on the 18.16 server used locally: every migration and every
 * named query runs here on chdb (embedded ClickHouse 26.x), and on the local server in migrate.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { loadMigrations, migrate, type SqlEngine } from '../../../sinks/clickhouse/migrate.ts';
import { namedQueries, namedQuerySql, type NamedQueryName } from '../../../sinks/clickhouse/queries.ts';
import { migrationsDir } from '../../../sinks/clickhouse/schema.ts';

interface ChdbSession {
  query(sql: string, format?: string): string;
  close(): void;
}
const { Session, version } = createRequire(import.meta.url)('chdb') as {
  Session: new (path: string) => ChdbSession;
  version?: () => string;
};

describe('SQL portability on current ClickHouse (chdb)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'as-chdb-'));
  const session = new Session(dir);
  const engine: SqlEngine = {
    async exec(sql) {
      session.query(sql);
    },
    async rows<T>(sql: string) {
      return session
        .query(`${sql} SETTINGS output_format_json_quote_64bit_integers = 0`, 'JSONEachRow')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as T);
    },
  };
  afterAll(() => {
    session.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs on ClickHouse 2x', () => {
    const v = session.query('SELECT version()', 'TSV').trim();
    expect(Number(v.split('.')[0])).toBeGreaterThanOrEqual(24);
    void version;
  });

  it('applies every migration, and a second run applies nothing', async () => {
    session.query('CREATE DATABASE IF NOT EXISTS agent_streams');
    session.query('USE agent_streams');
    const migrations = loadMigrations(migrationsDir(join(import.meta.dirname, '../../..')));
    const first = await migrate(engine, migrations);
    expect(first.applied).toHaveLength(migrations.length);
    const second = await migrate(engine, migrations);
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toHaveLength(migrations.length);
  });

  it.each(Object.keys(namedQueries) as NamedQueryName[])(
    'runs the named query %s with its example parameters',
    async (name) => {
      session.query(
        `INSERT INTO findings FORMAT JSONEachRow ${JSON.stringify({
          finding_id: 'f1',
          agent: 'price-move',
          rule: 'drop',
          symbol: 'ACME',
          portfolio_id: 'growth',
          severity: 'high',
          window_start: 1767225600,
          window_end: 1767225660,
          event_time: 1767225630,
          event_time_ms: 1767225630000,
          evidence: '{}',
          source_topic: 't',
          source_partition: 0,
          source_offset: 1,
          created_at: 1767225700,
          version: 1,
        })}`,
      );
      const rows = await engine.rows(namedQuerySql(name, namedQueries[name].example));
      expect(Array.isArray(rows)).toBe(true);
    },
  );
});
