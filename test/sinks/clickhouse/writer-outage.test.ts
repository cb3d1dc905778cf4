/**
 * ClickHouse goes away mid-run: only the local stack's ClickHouse is stopped while rows keep coming, then started
 * again. The writer retries and holds its bounded buffer, the producer waits on backpressure, and afterwards every
 * row is there exactly once as queried with FINAL. ClickHouse is always started again, whatever happens.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { namedQuerySql } from '../../../sinks/clickhouse/queries.ts';
import { ClickHouseWriter, isSinkBackpressure } from '../../../sinks/clickhouse/writer.ts';
import { createStackContext, stackDown, stackStatus, stackUp } from '../../../infra/local/stack.ts';
import { retry } from '../../../runtime/retry.ts';
import { config, uniqueName } from '../../support/stack.ts';
import { testStackKind } from '../../support/stack-kind.ts';
import { BASE_SECONDS, findingRows } from './findings.ts';

const root = join(import.meta.dirname, '../../..');
const MIN_ROWS = 40_000;

describe.skipIf(testStackKind !== 'local')('ClickHouseWriter while ClickHouse is down', () => {
  const database = uniqueName('as_outage');
  const testConfig = { ...config, clickhouse: { ...config.clickhouse, database } };
  const ctx = createStackContext(config, root);
  let client: ClickHouseClient;

  beforeAll(async () => {
    await migrateDatabase(testConfig, root);
    client = openClickHouse(testConfig);
  });
  afterAll(async () => {
    try {
      await stackUp(ctx, ['clickhouse']);
    } finally {
      await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
      await client?.close();
    }
  });

  it('keeps every row through a stop and start of ClickHouse, each exactly once as queried', async () => {
    const started = Date.now();
    const events: string[] = [];
    const writer = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      maxBatchRows: 2_000,
      maxBatchAgeMs: 50,
      maxBufferedRows: 10_000,
      retry: retry({ initialMs: 100, maxMs: 1_000 }),
      log: (event) => events.push(event),
    });
    let stoppingAt = 0;
    let stoppedAt = 0;
    let startedAt = 0;

    const outage = (async () => {
      while (writer.stats.rowsInserted < 8_000) await sleep(5);
      stoppingAt = Date.now();
      const [down] = await stackDown(ctx, ['clickhouse']);
      expect(down?.action).toMatch(/^(stopped|killed)$/);
      stoppedAt = Date.now();
      await sleep(4_000);
      await stackUp(ctx, ['clickhouse']);
      startedAt = Date.now();
      events.push(`outage: stop took ${stoppedAt - stoppingAt} ms, down ${startedAt - stoppedAt} ms`);
    })();
    let outageError: unknown;
    outage.catch((error: unknown) => (outageError = error));

    // Rows keep coming, about 10k/s, from before the stop until a second after the start (and at least MIN_ROWS):
    // 18.16 keeps serving open connections for a while after SIGTERM, so the outage's timing is not known ahead.
    let written = 0;
    let refusedWhileDown = 0;
    try {
      while (written < MIN_ROWS || startedAt === 0 || Date.now() - startedAt < 1_000) {
        const chunk = findingRows(500, written);
        for (;;) {
          try {
            writer.write('findings', chunk);
            break;
          } catch (error) {
            if (!isSinkBackpressure(error)) throw error;
            if (stoppingAt > 0 && startedAt === 0) refusedWhileDown += 1;
            // Memory stays bounded while the server is away: the writer holds at most its limit.
            expect(writer.buffered.rows).toBeLessThanOrEqual(10_000);
            await sleep(error.retryAfterMs);
          }
        }
        written += chunk.length;
        await sleep(50);
        if (outageError !== undefined) throw outageError;
        if (Date.now() - started > 90_000) throw new Error('the outage did not end within 90 s');
      }
      await outage;
      await writer.close();
    } finally {
      // Whatever failed above, ClickHouse must run again for the tests after this one.
      await outage.catch(() => undefined);
      const [status] = await stackStatus(ctx, ['clickhouse']);
      if (status?.state !== 'healthy') await stackUp(ctx, ['clickhouse']);
    }
    const rows = findingRows(written);

    expect(startedAt - stoppedAt).toBeGreaterThanOrEqual(4_000);
    expect(refusedWhileDown).toBeGreaterThan(0);
    expect(writer.stats.insertRetries).toBeGreaterThan(0);
    expect(events).toContain('clickhouse.insert-retry');
    expect(writer.stats.rowsRejected).toBe(0);
    console.log(
      `${written} rows; ${events.find((e) => e.startsWith('outage'))}; ${writer.stats.insertRetries} retries, ${writer.stats.inserts} inserts`,
    );
    expect(writer.stats.rowsWritten).toBe(written);

    const one = async (sql: string): Promise<number> =>
      Number((await (await client.query({ query: sql, format: 'JSONEachRow' })).json<{ n: number }>())[0]!.n);
    expect(await one('SELECT count() AS n FROM findings FINAL')).toBe(written);
    expect(await one('SELECT uniqExact(finding_id) AS n FROM findings')).toBe(written);
    // Physically there may be more: an insert that reached the server just before it stopped was sent again.
    expect(await one('SELECT count() AS n FROM findings')).toBeGreaterThanOrEqual(written);

    const counts = await (
      await client.query({
        query: namedQuerySql('severityCounts', {
          portfolio: 'income',
          from: BASE_SECONDS,
          to: BASE_SECONDS + written * 30,
        }),
        format: 'JSONEachRow',
      })
    ).json<{ agent: string; severity: string; findings: number }>();
    const expected = new Map<string, number>();
    for (const r of rows.filter((row) => row.portfolio_id === 'income'))
      expected.set(`${r.agent}/${r.severity}`, (expected.get(`${r.agent}/${r.severity}`) ?? 0) + 1);
    expect(new Map(counts.map((c) => [`${c.agent}/${c.severity}`, Number(c.findings)]))).toEqual(expected);
  }, 120_000);
});
