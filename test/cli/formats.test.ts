/**
 * What the data commands print: `--version`; `--format table|json` everywhere rows are printed; long cells cut at
 * a word boundary with "…" (JSON keeps them whole); the digest's period column is `window_start` (as in `demo`);
 * `smoke` writes its own table, never `findings`. Test rows are dated 2001 under a portfolio of their own, so the
 * default `findings` (last 24 h) never shows them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { lines, root, runCli } from '../support/cli.ts';
import { config, uniqueName } from '../support/stack.ts';

// Each case starts the CLI a few times (a Node process each): a busy two-core machine must not fail them on time.
vi.setConfig({ testTimeout: 240_000 });

const OLD = 1_000_000_000; // 2001-09-09: far outside any default --since
const SINCE = ['--since', '9500d'];

const words = (n: number): string => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');

describe('agent-streams --version', () => {
  it('prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const result = await runCli([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout).toBe(`agent-streams ${version}\n`);
    }
  });
});

describe('query commands: --format and the digest column', () => {
  it('findings: table cuts the evidence with …, JSON keeps it whole, markdown still works', async () => {
    const portfolio = uniqueName('fmt');
    const evidence = words(60);
    const ch = openClickHouse(config);
    try {
      await ch.insert({
        table: 'findings',
        format: 'JSONEachRow',
        values: [
          {
            finding_id: `${portfolio}:1`,
            agent: 'cli-test',
            rule: 'format',
            symbol: 'ACME',
            portfolio_id: portfolio,
            severity: 'high',
            window_start: OLD,
            window_end: OLD + 60,
            event_time: OLD,
            event_time_ms: OLD * 1000,
            evidence,
            source_topic: 't',
            source_partition: 0,
            source_offset: 0,
            created_at: OLD,
            version: 1,
          },
        ],
      });
    } finally {
      await ch.close();
    }
    const table = await runCli(['findings', '--portfolio', portfolio, ...SINCE]);
    expect(table.code, table.stderr).toBe(0);
    const [header, row] = lines(table.stdout);
    expect(header).toMatch(/^finding_id\s+agent\s+rule\s+symbol\s+severity\s+window_start\s+window_end\s+evidence$/);
    const cell = row!.slice(header!.indexOf('evidence'));
    expect(cell.endsWith('…')).toBe(true);
    expect(evidence.startsWith(cell.slice(0, -1))).toBe(true);
    expect(evidence[cell.length - 1]).toBe(' ');

    const json = await runCli(['findings', '--portfolio', portfolio, ...SINCE, '--format', 'json']);
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ finding_id: `${portfolio}:1`, evidence })]);
    const markdown = await runCli(['findings', '--portfolio', portfolio, ...SINCE, '--format', 'markdown']);
    expect(lines(markdown.stdout)[1]).toMatch(/^\| --- \|/);
    // Not in the default view: the last 24 hours.
    const recent = await runCli(['findings', '--format', 'json', '--limit', '100000']);
    expect(recent.stdout).not.toContain(portfolio);
  });

  it('digest: the period column is window_start in table and JSON', async () => {
    const portfolio = uniqueName('dig');
    const ch = openClickHouse(config);
    try {
      await ch.insert({
        table: 'digests',
        format: 'JSONEachRow',
        values: [
          {
            digest_id: `${portfolio}:1`,
            portfolio_id: portfolio,
            hour_start: OLD,
            summary: 'quiet hour',
            finding_count: 2,
            alert_count: 1,
            model: 'rules-only',
            created_at: OLD,
            version: 1,
          },
        ],
      });
    } finally {
      await ch.close();
    }
    const json = await runCli(['digest', '--portfolio', portfolio, ...SINCE, '--format', 'json']);
    expect(json.code, json.stderr).toBe(0);
    const [digest] = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(digest).toMatchObject({
      digest_id: `${portfolio}:1`,
      window_start: '2001-09-09 01:46:40',
      finding_count: 2,
    });
    expect(digest).not.toHaveProperty('hour_start');
    const table = await runCli(['digest', '--portfolio', portfolio, ...SINCE]);
    expect(lines(table.stdout)[0]).toMatch(/^digest_id\s+window_start\s+summary/);
  });

  it('the other data commands take --format json: stack status, schemas register, config --settings', async () => {
    const status = await runCli(['stack', 'status', '--format', 'json']);
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as Array<{ name: string; state: string }>).map((s) => [s.name, s.state])).toEqual(
      [
        ['kafka', 'healthy'],
        ['registry', 'healthy'],
        ['redis', 'healthy'],
        ['clickhouse', 'healthy'],
      ],
    );
    const schemas = await runCli(['schemas', 'register', '--dir', 'test/fixtures/schemas', '--format', 'json']);
    expect(schemas.code, schemas.stderr).toBe(0);
    expect((JSON.parse(schemas.stdout) as Array<{ subject: string }>).map((s) => s.subject).sort()).toEqual([
      'agentstreams.test.Event',
      'agentstreams.test.WindowCount',
    ]);
    const settings = await runCli(['config', '--settings', '--format', 'json']);
    expect((JSON.parse(settings.stdout) as Array<{ env: string }>).map((s) => s.env)).toContain('AS_KAFKA_BROKERS');
    const bad = await runCli(['stack', 'status', '--format', 'xml']);
    expect(bad.code).toBe(2);
  });
});

describe('agent-streams table', () => {
  it('load, then show as JSON (its default) and as a table; an unknown table is a usage error', async () => {
    const env = { AS_FLEET_APP: uniqueName('tbl').replaceAll('_', '-') };
    const loaded = await runCli(
      ['table', 'load', 'topologies/market-signals.ts', 'portfolios', 'topologies/portfolios.json'],
      { env },
    );
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.stdout).toMatch(/^loaded 3 rows into table portfolios/);
    const json = await runCli(['table', 'show', 'topologies/market-signals.ts', 'portfolios'], { env });
    expect((JSON.parse(json.stdout) as Array<{ portfolioId: string }>).map((p) => p.portfolioId).sort()).toEqual([
      'balanced',
      'growth',
      'income',
    ]);
    const table = await runCli(['table', 'show', 'topologies/market-signals.ts', 'portfolios', '--format', 'table'], {
      env,
    });
    const [header, ...rows] = lines(table.stdout);
    expect(header).toMatch(/^portfolioId\s+name\s+holdings/);
    expect(rows).toHaveLength(3);
    const unknown = await runCli(['table', 'show', 'topologies/market-signals.ts', 'nope'], { env });
    expect(unknown.code).toBe(2);
    expect(lines(unknown.stderr)).toEqual([expect.stringContaining('has no table "nope"; it has portfolios')]);
  });
});

describe('agent-streams smoke', () => {
  it('keeps to its own table: its rows are in smoke_price_ranges, none in findings', async () => {
    const result = await runCli(['smoke', '--events', '200'], { timeoutMs: 120_000 });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const runId = /consumer group (smoke-[a-z0-9]+)-group/.exec(result.stdout)?.[1];
    expect(runId).toBeDefined();
    const ch = openClickHouse(config);
    try {
      const count = async (sql: string): Promise<number> =>
        Number((await (await ch.query({ query: sql, format: 'JSONEachRow' })).json<{ n: number | string }>())[0]!.n);
      expect(await count(`SELECT count() AS n FROM smoke_price_ranges FINAL WHERE run_id = '${runId}'`)).toBe(8);
      expect(await count(`SELECT count() AS n FROM findings WHERE portfolio_id = '${runId}'`)).toBe(0);
    } finally {
      await ch.close();
    }
  }, 150_000);
});
