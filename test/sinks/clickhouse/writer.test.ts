/**
 * ClickHouseWriter on the local ClickHouse 18.16: large batches, a bounded buffer that signals backpressure, and
 * bad rows caught at write time or isolated after the server refuses them, without losing the good rows.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { namedQuerySql } from '../../../sinks/clickhouse/queries.ts';
import { ClickHouseWriter, SinkBackpressureError, type RejectedRow } from '../../../sinks/clickhouse/writer.ts';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { ErrorCode, type AgentStreamsError } from '../../../runtime/errors.ts';
import { retry, retryAfterMsOf, withRetry } from '../../../runtime/retry.ts';
import { config, uniqueName } from '../../support/stack.ts';
import { BASE_SECONDS, findingRowAt, findingRows } from './findings.ts';

const root = join(import.meta.dirname, '../../..');

/** The client, with its INSERT requests counted (the writer sends each batch through `exec`). */
function countingClient(client: ClickHouseClient): { client: ClickHouseClient; inserts: () => number } {
  let inserts = 0;
  const counted = new Proxy(client, {
    get(target, property, receiver) {
      if (property === 'exec') {
        return (params: Parameters<ClickHouseClient['exec']>[0]) => {
          if (/^INSERT\b/.test(params.query)) inserts += 1;
          return target.exec(params);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { client: counted, inserts: () => inserts };
}

describe('ClickHouseWriter on the local server', () => {
  const database = uniqueName('as_writer');
  const testConfig = { ...config, clickhouse: { ...config.clickhouse, database } };
  let client: ClickHouseClient;
  const scalar = async (sql: string): Promise<number> => {
    const rows = await (await client.query({ query: sql, format: 'JSONEachRow' })).json<{ n: number | string }>();
    return Number(rows[0]!.n);
  };

  beforeAll(async () => {
    await migrateDatabase(testConfig, root);
    client = openClickHouse(testConfig);
  });
  afterAll(async () => {
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('turns 50,000 rows written in small pieces into three inserts, and every row is queryable', async () => {
    await client.command({ query: 'TRUNCATE TABLE findings' });
    const counted = countingClient(client);
    const metrics = createMetrics({ processMetrics: false });
    const writer = await ClickHouseWriter.open({
      client: counted.client,
      tables: ['findings'],
      maxBatchRows: 20_000,
      maxBatchAgeMs: 10_000,
      metrics,
    });
    const rows = findingRows(50_000);
    for (let i = 0; i < rows.length; i += 1_000) writer.write('findings', rows.slice(i, i + 1_000));
    await writer.close();

    // 20k + 20k sent on size, the last 10k on close.
    expect(counted.inserts()).toBe(3);
    expect(writer.stats).toMatchObject({
      inserts: 3,
      rowsWritten: 50_000,
      rowsInserted: 50_000,
      insertRetries: 0,
      rowsRejected: 0,
    });
    const histogram = await metrics.sinkOperationDuration.get();
    expect(
      histogram.values.find((v) => v.metricName === 'agent_streams_sink_operation_duration_seconds_count'),
    ).toMatchObject({ labels: { operation: 'insert:findings' }, value: 3 });

    expect(await scalar('SELECT count() AS n FROM findings FINAL')).toBe(50_000);
    expect(await scalar('SELECT uniqExact(finding_id) AS n FROM findings')).toBe(50_000);
    const counts = await (
      await client.query({
        query: namedQuerySql('severityCounts', {
          portfolio: 'growth',
          from: BASE_SECONDS,
          to: BASE_SECONDS + 30 * 86_400,
        }),
        format: 'JSONEachRow',
      })
    ).json<{ findings: number }>();
    expect(counts.reduce((sum, r) => sum + Number(r.findings), 0)).toBe(
      rows.filter((r) => r.portfolio_id === 'growth').length,
    );
  });

  it('sends early only a tenth of a batch or more, and not again within a quarter of the batch age', async () => {
    await client.command({ query: 'TRUNCATE TABLE findings' });
    const writer = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      maxBatchRows: 10_000,
      maxBatchAgeMs: 60_000,
    });
    const rows = findingRows(3_000);
    writer.write('findings', rows.slice(0, 999));
    expect(writer.sendEarly()).toBe(false); // 999 rows: under a tenth of 10,000
    expect(writer.unsentRows).toBe(999);
    writer.write('findings', rows.slice(999, 1_000));
    expect(writer.sendEarly()).toBe(true);
    expect(writer.unsentRows).toBe(0);
    writer.write('findings', rows.slice(1_000, 3_000));
    expect(writer.sendEarly()).toBe(false); // 2,000 rows, but a batch went out less than 15 s ago
    expect(writer.unsentRows).toBe(2_000);
    await writer.close();
    expect(writer.stats.inserts).toBe(2);
    expect(await scalar('SELECT count() AS n FROM findings FINAL')).toBe(3_000);
  });

  it('signals backpressure with a retry-after hint when its buffer is full, and buffers nothing of the refused write', async () => {
    await client.command({ query: 'TRUNCATE TABLE findings' });
    const writer = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      maxBatchRows: 1_000,
      maxBatchAgeMs: 60_000,
      maxBufferedRows: 100,
    });
    writer.write('findings', findingRows(100));
    let error: unknown;
    try {
      writer.write('findings', findingRows(1, 100));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SinkBackpressureError);
    const backpressure = error as SinkBackpressureError;
    expect(backpressure.code).toBe(ErrorCode.SINK_BACKPRESSURE);
    expect(backpressure.retriable).toBe(true);
    expect(backpressure.retryAfterMs).toBeGreaterThan(0);
    expect(retryAfterMsOf(backpressure)).toBe(backpressure.retryAfterMs);
    expect(backpressure.message).toMatch(/buffer is full .* Pause the input/);
    expect(writer.buffered.rows).toBe(100);
    expect(writer.stats.backpressureSignals).toBe(1);

    // Once the buffer has drained the same write fits.
    await writer.flush();
    expect(writer.buffered.rows).toBe(0);
    writer.write('findings', findingRows(1, 100));

    // A caller that simply waits as told (withRetry honours retryAfterMs) gets everything through.
    const small = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      maxBatchRows: 50,
      maxBatchAgeMs: 5,
      maxBufferedRows: 100,
    });
    const rows = findingRows(2_000, 1_000);
    for (let i = 0; i < rows.length; i += 50) {
      const chunk = rows.slice(i, i + 50);
      await withRetry(() => small.write('findings', chunk), retry({ initialMs: 1, maxMs: 20 }));
    }
    await small.close();
    await writer.close();
    expect(small.stats.backpressureSignals).toBeGreaterThan(0);
    expect(await scalar('SELECT count() AS n FROM findings FINAL')).toBe(2_101);
  });

  it('refuses a row that misses a column or carries a Date at write time, naming the table and the column', async () => {
    const writer = await ClickHouseWriter.open({ client, tables: ['findings'] });
    const { evidence: _dropped, ...missing } = findingRowAt(1);
    expect(() => writer.write('findings', [missing])).toThrow(
      /table "findings" is invalid: column "evidence" is missing/,
    );
    expect(() => writer.write('findings', [{ ...findingRowAt(2), created_at: new Date() }])).toThrow(
      /"created_at" is a DateTime: send whole epoch seconds/,
    );
    expect(() => writer.write('findings', [{ ...findingRowAt(3), extra: 1 }])).toThrow(/unknown column\(s\) extra/);
    try {
      writer.write('findings', [missing]);
    } catch (error) {
      expect((error as AgentStreamsError).code).toBe(ErrorCode.SINK_ROW_INVALID);
      expect((error as AgentStreamsError).details).toMatchObject({ table: 'findings' });
      expect(String((error as AgentStreamsError).details.sample)).toContain(missing.finding_id);
    }
    expect(writer.buffered.rows).toBe(0);
    await writer.close();
  });

  it('inserts the good rows of a batch the server refuses and hands back each bad row with its table and a sample', async () => {
    // RowBinary values are checked against their columns at write time, so what the server can still refuse is
    // what the table itself computes: here a MATERIALIZED column that cannot parse some rows' text.
    await client.command({
      query:
        'CREATE TABLE IF NOT EXISTS guarded (id String, n String, parsed UInt32 MATERIALIZED toUInt32(n)) ENGINE = MergeTree ORDER BY id',
    });
    await client.command({ query: 'TRUNCATE TABLE guarded' });
    const rows = Array.from({ length: 1_000 }, (_, i) => ({
      id: `r${i}`,
      n: [137, 600, 999].includes(i) ? 'bad' : `${i}`,
    }));

    const writer = await ClickHouseWriter.open({ client, tables: ['guarded'] });
    writer.write('guarded', rows);
    const error = (await writer.flush().catch((e: unknown) => e)) as AgentStreamsError;
    expect(error.code).toBe(ErrorCode.SINK_ROW_REJECTED);
    const refused = error.details.rows as Array<{ table: string; sample: string; reason: string }>;
    expect(refused).toHaveLength(3);
    expect(refused.every((r) => r.table === 'guarded')).toBe(true);
    expect(refused.map((r) => JSON.parse(r.sample)).sort((a, b) => a.id.localeCompare(b.id))).toEqual([
      { id: 'r137', n: 'bad' },
      { id: 'r600', n: 'bad' },
      { id: 'r999', n: 'bad' },
    ]);
    expect(refused[0]!.reason).toMatch(/Cannot parse/);
    expect(await scalar('SELECT count() AS n FROM guarded')).toBe(997);
    await writer.close();

    // With a handler, the rows come back with the tag they were written with (the topic sink's source record).
    await client.command({ query: 'TRUNCATE TABLE guarded' });
    const rejected: Array<RejectedRow<number>> = [];
    const tagged = await ClickHouseWriter.open<number>({
      client,
      tables: ['guarded'],
      onRejected: (_table, r) => void rejected.push(...r),
    });
    rows.forEach((row, i) => tagged.write('guarded', [row], i));
    await tagged.close();
    expect(rejected.map((r) => r.tag).sort((a, b) => a! - b!)).toEqual([137, 600, 999]);
    expect(rejected.every((r) => r.error.code === ErrorCode.SINK_ROW_REJECTED)).toBe(true);
    expect(rejected.map((r) => JSON.parse(r.json).id).sort()).toEqual(['r137', 'r600', 'r999']);
    expect(tagged.stats.rowsRejected).toBe(3);
    expect(await scalar('SELECT count() AS n FROM guarded')).toBe(997);
  });

  it('retries a table that is briefly missing (a server starting or stopping), and the rows land when it is back', async () => {
    await client.command({ query: 'TRUNCATE TABLE findings' });
    const writer = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      missingTableGraceMs: 20_000,
      retry: retry({ initialMs: 50, maxMs: 200 }),
    });
    await client.command({ query: 'RENAME TABLE findings TO findings_away' });
    writer.write('findings', findingRows(10));
    const flushed = writer.flush();
    while (writer.stats.insertRetries < 2) await new Promise((resolve) => setTimeout(resolve, 50));
    await client.command({ query: 'RENAME TABLE findings_away TO findings' });
    await flushed;
    await writer.close();
    expect(writer.stats.rowsInserted).toBe(10);
    expect(await scalar('SELECT count() AS n FROM findings FINAL')).toBe(10);
  });

  it('fails loudly, without dead-lettering anything, when the table cannot take any row', async () => {
    const writer = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      missingTableGraceMs: 300,
      retry: retry({ initialMs: 50, maxMs: 100 }),
    });
    await client.command({ query: 'RENAME TABLE findings TO findings_away' });
    try {
      writer.write('findings', findingRows(10));
      const error = (await writer.flush().catch((e: unknown) => e)) as AgentStreamsError;
      expect(error.code).toBe(ErrorCode.SINK_INSERT_FAILED);
      expect(error.message).toMatch(/findings.*cannot succeed by retrying/);
      expect(writer.currentState).toBe('failed');
      expect(writer.stats.insertRetries).toBeGreaterThan(0); // within the grace, then final
      expect(() => writer.write('findings', findingRows(1))).toThrow(/cannot succeed by retrying/);
      expect(writer.stats.rowsRejected).toBe(0);
    } finally {
      await client.command({ query: 'RENAME TABLE findings_away TO findings' });
      writer.abort();
    }
    await expect(ClickHouseWriter.open({ client, tables: ['nope'] })).rejects.toThrow(/table\(s\) nope do not exist/);
  });
});
