/**
 * The Kafka → ClickHouse sink on the real stack: 20k `agentstreams.fleet.Finding` records (plus a few bad ones) are
 * sunk; the first sink instance is killed after it has inserted rows whose offsets it never committed, so the second
 * instance inserts those rows again. As queried (FINAL, named queries) every finding is there exactly once; every
 * bad record is in the dead-letter topic with the reason; a small writer buffer makes the second instance pause
 * partitions on backpressure along the way.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import type { KafkaAdmin, KafkaPort } from '../../../runtime/kafka/port.ts';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { namedQuerySql } from '../../../sinks/clickhouse/queries.ts';
import { findingRow } from '../../../processors/results/rows.ts';
import {
  mapTo,
  runClickHouseSink,
  type ClickHouseSinkHandle,
  type ClickHouseSinkOptions,
} from '../../../sinks/clickhouse/topic-sink.ts';
import { deadLetterHeader } from '../../../runtime/engine/dead-letter.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { FindingType, type Finding, type Severity } from '../../../schemas/generated/types.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { AGENTS, BASE_SECONDS, PORTFOLIOS, SEVERITIES, findingId } from './findings.ts';

const root = join(import.meta.dirname, '../../..');
const GOOD = 20_000;
const PARTITIONS = 4;

function findingAt(i: number): Finding {
  const agent = AGENTS[i % AGENTS.length]!;
  const rule = i % 997 === 500 ? 'poison' : i % 1999 === 1000 ? 'incomplete' : `rule-${i % 7}`;
  const symbol = `S${i % 40}`;
  const portfolioId = PORTFOLIOS[i % PORTFOLIOS.length]!;
  const windowStart = (BASE_SECONDS + i * 30) * 1000;
  return {
    findingId: findingId(agent, rule, symbol, portfolioId, windowStart),
    agent,
    rule,
    symbol,
    portfolioId,
    severity: SEVERITIES[(i * 7) % SEVERITIES.length]!,
    windowStart,
    windowEnd: windowStart + 60_000,
    eventTime: windowStart + 59_000 + (i % 1000),
    evidence: { return: -0.01 * (i % 9), zScore: (i % 50) / 10 },
    summary: `finding ${i}`,
    sourceTopic: 'signals.price',
    sourcePartition: i % 6,
    sourceOffset: i,
  };
}

/**
 * The test's mapping: the real finding mapping, plus two deliberate faults, both caught at write time — rule "poison"
 * maps to a severity the table's Enum8 does not have (the writer reads the elements from the column type), rule
 * "incomplete" leaves a column out. Rows the server itself refuses are isolated in writer.test.ts.
 */
const mappings: ClickHouseSinkOptions['mappings'] = {
  [FindingType]: mapTo<Finding>('findings', (finding, meta) => {
    const row = findingRow(finding, meta);
    if (finding.rule === 'poison') return { ...row, severity: 'severe' as Severity };
    if (finding.rule === 'incomplete') {
      const { evidence: _left, ...rest } = row;
      return rest;
    }
    return row;
  }),
};

describe('ClickHouse topic sink on the real stack', () => {
  const app = uniqueName('chsink').replaceAll('_', '-');
  const topic = `${app}.findings`;
  const deadLetterTopic = `${app}.dead-letters`;
  const group = `${app}.clickhouse-sink`;
  const database = uniqueName('as_sink');
  const testConfig = { ...config, clickhouse: { ...config.clickhouse, database } };
  let kafka: KafkaPort;
  let admin: KafkaAdmin;
  let client: ClickHouseClient;
  const handles: ClickHouseSinkHandle[] = [];

  beforeAll(async () => {
    await migrateDatabase(testConfig, root);
    client = openClickHouse(testConfig);
    kafka = kafkaClient();
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
  });
  afterAll(async () => {
    for (const handle of handles) await handle.abort();
    await admin?.deleteTopics({ topics: [topic, deadLetterTopic] }).catch(() => undefined);
    await admin?.deleteGroups([group]).catch(() => undefined);
    await admin?.disconnect();
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('sinks every finding exactly once as queried across a kill and restart, and dead-letters the bad records', async () => {
    const registry = registryClient(config);
    const finding = loadSchemas(join(root, 'schemas/fleet')).filter((s) => s.subject === FindingType);
    const event = loadSchemas(join(root, 'test/fixtures/schemas')).filter(
      (s) => s.subject === 'agentstreams.test.Event',
    );
    await registerSchemas(config, registry, [...finding, ...event]);
    const serde = new AvroSerde(registry);
    await serde.writerFor(FindingType);
    await serde.writerFor('agentstreams.test.Event');

    const findings = Array.from({ length: GOOD + 40 }, (_, i) => findingAt(i));
    const poison = findings.filter((f) => f.rule === 'poison');
    const incomplete = findings.filter((f) => f.rule === 'incomplete');
    const good = findings.filter((f) => f.rule !== 'poison' && f.rule !== 'incomplete').slice(0, GOOD);
    expect(good).toHaveLength(GOOD);
    const expectedBad = new Map<string, { stage: string; code: string }>();
    const messages = [...good, ...poison, ...incomplete].map((f) => {
      if (f.rule === 'poison') expectedBad.set(f.findingId, { stage: 'process', code: 'AS_SINK_ROW_INVALID' });
      if (f.rule === 'incomplete') expectedBad.set(f.findingId, { stage: 'process', code: 'AS_SINK_ROW_INVALID' });
      return { key: f.symbol, value: serde.encode(FindingType, f), headers: { marker: f.findingId } };
    });
    for (let i = 0; i < 10; i += 1) {
      expectedBad.set(`raw-${i}`, { stage: 'deserialize', code: 'AS_DESERIALIZE' });
      messages.splice(i * 1_500 + 7, 0, {
        key: `S${i}`,
        value: Buffer.from(`{"not":"avro ${i}"}`),
        headers: { marker: `raw-${i}` },
      });
      expectedBad.set(`event-${i}`, { stage: 'route', code: 'AS_NO_ROUTE' });
      messages.splice(i * 1_500 + 11, 0, {
        key: `S${i}`,
        value: serde.encode('agentstreams.test.Event', { key: `S${i}`, eventTime: 1, amount: i }),
        headers: { marker: `event-${i}` },
      });
    }
    expect(poison.length).toBeGreaterThan(5);
    expect(incomplete.length).toBeGreaterThan(5);

    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const produce = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i += 5_000)
        await producer.send({ topic, acks: -1, messages: messages.slice(i, Math.min(to, i + 5_000)) });
    };
    const half = Math.floor(messages.length / 2);
    const goodInFirstHalf = messages
      .slice(0, half)
      .filter((m) => good.some((g) => g.findingId === m.headers.marker)).length;

    const base: ClickHouseSinkOptions = {
      config: testConfig,
      name: group,
      topics: [topic],
      deadLetterTopic,
      mappings,
      // Only explicit checkpoints commit in this test, so what the kill leaves uncommitted is known.
      commitIntervalMs: 3_600_000,
    };

    // First instance: sinks and commits the first half, then sinks (inserts) part of the second half and is killed
    // before committing it.
    await produce(0, half);
    const first = await runClickHouseSink({ ...base, writer: { maxBatchRows: 2_000, maxBatchAgeMs: 20 } });
    handles.push(first);
    await waitFor(() => first.stats.rowsInserted >= goodInFirstHalf, 'first half inserted');
    await waitFor(() => first.stats.records >= half, 'first half consumed');
    await first.checkpoint();
    expect(first.stats.commits).toBe(1);
    await produce(half, messages.length);
    await waitFor(() => first.stats.rowsInserted >= goodInFirstHalf + 3_000, 'part of the second half inserted');
    await first.abort();
    expect(first.state()).toBe('stopped');
    expect(first.stats.commits).toBe(1);
    const insertedByFirst = first.stats.rowsInserted;

    // Second instance, same group: resumes from the committed offsets, with a buffer small enough to pause.
    const second = await runClickHouseSink({
      ...base,
      writer: { maxBatchRows: 500, maxBatchAgeMs: 20, maxBufferedRows: 1_500 },
    });
    handles.push(second);
    await waitFor(async () => {
      await second.checkpoint();
      const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      const ends = await admin.fetchTopicOffsets(topic);
      return ends.every(
        (end) => committed[0]!.partitions.find((p) => p.partition === end.partition)?.offset === end.high,
      );
    }, 'everything committed');
    await second.stop();
    await producer.disconnect();

    // Some rows were inserted twice (by the killed instance and again by its successor)…
    expect(insertedByFirst + second.stats.rowsInserted).toBeGreaterThan(GOOD);
    expect(second.stats.pauses).toBeGreaterThan(0);
    const one = async (sql: string): Promise<number> =>
      Number((await (await client.query({ query: sql, format: 'JSONEachRow' })).json<{ n: number }>())[0]!.n);
    const raw = await one('SELECT count() AS n FROM findings');
    // …which raw count() may still show (until a background merge collapses them), but FINAL never does.
    expect(raw).toBeGreaterThanOrEqual(GOOD);
    expect(await one('SELECT count() AS n FROM findings FINAL')).toBe(GOOD);
    expect(await one('SELECT uniqExact(finding_id) AS n FROM findings')).toBe(GOOD);
    console.log(
      `raw count() ${raw}, FINAL ${GOOD}; rows inserted: ${insertedByFirst} by the killed instance, ${second.stats.rowsInserted} by its successor`,
    );

    // The named queries return exactly the expected rows.
    const from = BASE_SECONDS;
    const to = BASE_SECONDS + (GOOD + 100) * 30;
    const query = async <T>(name: Parameters<typeof namedQuerySql>[0], params: Record<string, unknown>): Promise<T[]> =>
      (await client.query({ query: namedQuerySql(name, params), format: 'JSONEachRow' })).json<T>();
    const newestFirst = (a: Finding, b: Finding): number =>
      Math.floor(b.windowStart / 1000) - Math.floor(a.windowStart / 1000) || (a.findingId < b.findingId ? -1 : 1);

    const bySymbol = await query<{ finding_id: string; portfolio_id: string; severity: string }>('findingsBySymbol', {
      symbol: 'S7',
      from,
      to,
      limit: 100_000,
    });
    expect(bySymbol.map((r) => r.finding_id)).toEqual(
      good
        .filter((f) => f.symbol === 'S7')
        .sort(newestFirst)
        .map((f) => f.findingId),
    );

    const rank = (s: string): number => SEVERITIES.indexOf(s as Severity);
    const high = await query<{ finding_id: string; severity: string }>('findingsByPortfolio', {
      portfolio: 'growth',
      from,
      to,
      minSeverity: 'high',
      limit: 100_000,
    });
    expect(high.map((r) => r.finding_id)).toEqual(
      good
        .filter((f) => f.portfolioId === 'growth' && rank(f.severity) >= rank('high'))
        .sort(newestFirst)
        .map((f) => f.findingId),
    );

    for (const portfolio of PORTFOLIOS) {
      const counts = await query<{ agent: string; severity: string; findings: number }>('severityCounts', {
        portfolio,
        from,
        to,
      });
      const expected = new Map<string, number>();
      for (const f of good.filter((g) => g.portfolioId === portfolio))
        expected.set(`${f.agent}/${f.severity}`, (expected.get(`${f.agent}/${f.severity}`) ?? 0) + 1);
      expect(new Map(counts.map((c) => [`${c.agent}/${c.severity}`, Number(c.findings)]))).toEqual(expected);
    }

    // Every bad record is in the dead-letter topic, with where it came from and why.
    const dead = await readAll(kafka, deadLetterTopic, expectedBad.size);
    const byMarker = new Map(dead.map((d) => [d.marker, d.headers]));
    expect(byMarker.size).toBe(expectedBad.size);
    for (const [marker, want] of expectedBad) {
      const headers = byMarker.get(marker);
      expect(headers, marker).toBeDefined();
      expect(headers![deadLetterHeader.topic]).toBe(topic);
      expect(Number(headers![deadLetterHeader.offset])).toBeGreaterThanOrEqual(0);
      expect(headers![deadLetterHeader.processor]).toBe(group);
      expect({ stage: headers![deadLetterHeader.stage], code: headers![deadLetterHeader.errorCode] }, marker).toEqual(
        want,
      );
    }
  }, 180_000);
});

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${what}`);
    await sleep(50);
  }
}

async function readAll(
  kafka: KafkaPort,
  topic: string,
  atLeast: number,
): Promise<Array<{ marker: string; headers: Record<string, string> }>> {
  const out: Array<{ marker: string; headers: Record<string, string> }> = [];
  const consumer = kafka.consumer({ groupId: uniqueName('dlq-reader'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)]));
      out.push({ marker: headers.marker ?? '', headers });
    },
  });
  const until = Date.now() + 30_000;
  while (out.length < atLeast && Date.now() < until) await sleep(100);
  await sleep(500);
  await consumer.disconnect();
  return out;
}
