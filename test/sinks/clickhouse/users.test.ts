/**
 * Least-privilege ClickHouse users: on the local 18.16 server (users.d, as `stack up` writes them) the reader may
 * only SELECT and the sink may only write into the fleet's database, never change its schema; migrations stay with
 * the admin user. The same users as SQL for current ClickHouse (infra/clickhouse/users.sql) are parsed by chdb.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../../cli/paths.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { fleetClickHouseUsers, type TestClickHouseUsers } from '../../support/clickhouse-users.ts';
import { config, uniqueName } from '../../support/stack.ts';

const finding = {
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
};

const database = uniqueName('ch_users');
const other = `${database}_other`;
let users: TestClickHouseUsers;
const admin = openClickHouse(config, { database: null });

beforeAll(async () => {
  await migrateDatabase({ ...config, clickhouse: { ...config.clickhouse, database } }, projectRoot);
  await admin.command({ query: `CREATE DATABASE IF NOT EXISTS ${other}` });
  await admin.command({ query: `CREATE TABLE ${other}.t (a UInt8) ENGINE = Memory` });
  users = await fleetClickHouseUsers(database);
});

afterAll(async () => {
  users?.remove();
  await admin.command({ query: `DROP DATABASE IF EXISTS ${database}` });
  await admin.command({ query: `DROP DATABASE IF EXISTS ${other}` });
  await admin.close();
});

/** Runs `sql` as the role; resolves with the error message, or '' when it succeeded. */
async function as(role: 'sink' | 'reader', sql: string): Promise<string> {
  const client = openClickHouse(users.config, { role });
  try {
    await client.command({ query: sql });
    return '';
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.close();
  }
}

function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(projectRoot, 'cli/bin.mjs'), ...args], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stdout, stderr })));
}

describe('ClickHouse least-privilege users (18.16, users.d)', () => {
  it('the sink inserts into the fleet database and cannot create, alter, drop, truncate or write elsewhere', async () => {
    expect(await as('sink', `INSERT INTO findings FORMAT JSONEachRow ${JSON.stringify(finding)}`)).toBe('');
    expect(await as('sink', 'DROP TABLE findings')).toMatch(/DDL queries are prohibited/);
    expect(await as('sink', 'ALTER TABLE findings ADD COLUMN x UInt8')).toMatch(/DDL queries are prohibited/);
    expect(await as('sink', 'CREATE TABLE extra (a UInt8) ENGINE = Memory')).toMatch(/DDL queries are prohibited/);
    expect(await as('sink', 'TRUNCATE TABLE findings')).toMatch(/DDL queries are prohibited/);
    expect(await as('sink', `CREATE DATABASE ${database}_new`)).toMatch(/DDL queries are prohibited/);
    expect(await as('sink', `INSERT INTO ${other}.t VALUES (1)`)).toMatch(/Access denied to database/);
    const rows = await (
      await admin.query({ query: `SELECT finding_id FROM ${database}.findings`, format: 'JSONEachRow' })
    ).json();
    expect(rows).toEqual([{ finding_id: 'f1' }]);
  });

  it('the reader selects and cannot insert, alter or read other databases; the query commands run as the reader', async () => {
    expect(await as('reader', 'SELECT count() FROM findings')).toBe('');
    expect(
      await as('reader', `INSERT INTO findings FORMAT JSONEachRow ${JSON.stringify({ ...finding, finding_id: 'f2' })}`),
    ).toMatch(/readonly mode/);
    expect(await as('reader', 'ALTER TABLE findings ADD COLUMN x UInt8')).toMatch(/readonly mode/);
    expect(await as('reader', `SELECT * FROM ${other}.t`)).toMatch(/Access denied to database/);
    // readonly=1: not even a setting may change (the client's own output setting is in the reader's profile).
    expect(await as('reader', 'SELECT 1 SETTINGS max_threads = 3')).toMatch(/Code: 164.*readonly/);

    const shown = await cli(['findings', '--since', '36500d', '--format', 'json'], users.env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual([expect.objectContaining({ symbol: 'ACME', portfolio_id: 'growth' })]);
    // The command really uses the reader: with a wrong reader password it is refused.
    const refused = await cli(['findings', '--since', '36500d'], {
      ...users.env,
      AS_CLICKHOUSE_READER_PASSWORD: 'wrong',
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/password is incorrect|Authentication failed|Wrong password/i);
  });
});

describe('infra/clickhouse/users.sql on current ClickHouse (chdb)', () => {
  const { Session } = createRequire(import.meta.url)('chdb') as {
    Session: new (path: string) => { query(sql: string, format?: string): string; close(): void };
  };
  const dir = mkdtempSync(join(tmpdir(), 'as-chdb-users-'));
  const session = new Session(dir);
  afterAll(() => {
    session.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // chdb has no user directory to store users in, so each statement is parsed and formatted (formatQuery), which
  // fails on any syntax error, an unknown privilege included.
  const parse = (sql: string): string =>
    session.query(`SELECT formatQuery(${`'${sql.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`})`, 'TSV').trim();
  const statements = readFileSync(join(projectRoot, 'infra/clickhouse/users.sql'), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('--'))
    .join('\n')
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '');

  it('parses every statement: users, INSERT on the four tables for the sink, SELECT for the reader', () => {
    const formatted = statements.map(parse);
    expect(formatted.filter((s) => s.startsWith('CREATE USER'))).toHaveLength(2);
    expect(
      formatted.filter((s) =>
        /^GRANT INSERT ON agent_streams\.(findings|alerts|digests|llm_calls) TO agent_streams_sink$/.test(s),
      ),
    ).toHaveLength(4);
    expect(formatted).toContain('GRANT SELECT ON agent_streams.* TO agent_streams_reader');
  });

  it('the check fails on a misspelt privilege', () => {
    expect(() => parse('GRANT INSRT ON agent_streams.findings TO agent_streams_sink')).toThrow();
  });
});
