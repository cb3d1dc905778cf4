/**
 * The topic sink with a declared mapping (`mapColumns`) on the real stack: good findings are transcoded straight
 * from Avro into RowBinary, and the table then holds exactly what the fleet's mapping function (`findingRow`) gives
 * for them; records the transcoder gives up on take the generic path and are dead-lettered as before (a value out
 * of its documented range, bytes that are not Avro, a record type with no mapping); a declaration that does not
 * match the table's columns stops the sink at start, naming the columns.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import avro from 'avsc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import type { KafkaAdmin, KafkaPort } from '../../../runtime/kafka/port.ts';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { findingRow } from '../../../processors/results/rows.ts';
import { runClickHouseSink, type ClickHouseSinkHandle } from '../../../sinks/clickhouse/topic-sink.ts';
import { mapColumns } from '../../../sinks/clickhouse/transcode.ts';
import { deadLetterHeader } from '../../../runtime/engine/dead-letter.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { FindingType, type Finding } from '../../../schemas/generated/types.ts';
import { ErrorCode, type AgentStreamsError } from '../../../runtime/errors.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { AGENTS, BASE_SECONDS, PORTFOLIOS, SEVERITIES, findingColumns, findingId } from './findings.ts';

const root = join(import.meta.dirname, '../../..');
const GOOD = 3_000;

function findingAt(i: number): Finding {
  const agent = AGENTS[i % AGENTS.length]!;
  const symbol = `S${i % 40}`;
  const portfolioId = PORTFOLIOS[i % PORTFOLIOS.length]!;
  const windowStart = (BASE_SECONDS + i * 30) * 1000;
  return {
    findingId: findingId(agent, 'rule', symbol, portfolioId, windowStart),
    agent,
    rule: i % 5 === 0 ? `règle-${i}` : `rule-${i % 7}`,
    symbol,
    portfolioId,
    severity: SEVERITIES[(i * 7) % SEVERITIES.length]!,
    windowStart,
    windowEnd: windowStart + 60_000,
    eventTime: windowStart + 59_000 + (i % 1000),
    evidence: { return: -0.01 * (i % 9), zScore: (i % 50) / 10, [String(i % 3)]: i },
    summary: `finding ${i}`,
    sourceTopic: 'signals.price',
    sourcePartition: i % 6,
    sourceOffset: i,
  };
}

describe('ClickHouse topic sink with a declared mapping', () => {
  const app = uniqueName('chdecl').replaceAll('_', '-');
  const topic = `${app}.findings`;
  const deadLetterTopic = `${app}.dead-letters`;
  const group = `${app}.clickhouse-sink`;
  const database = uniqueName('as_decl');
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
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  });
  afterAll(async () => {
    for (const handle of handles) await handle.abort();
    await admin?.deleteTopics({ topics: [topic, deadLetterTopic] }).catch(() => undefined);
    await admin?.deleteGroups([group]).catch(() => undefined);
    await admin?.disconnect();
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('transcodes the good records into the rows findingRow gives, and dead-letters the bad ones as before', async () => {
    const registry = registryClient(config);
    const finding = loadSchemas(join(root, 'schemas/fleet')).filter((s) => s.subject === FindingType);
    const event = loadSchemas(join(root, 'test/fixtures/schemas')).filter(
      (s) => s.subject === 'agentstreams.test.Event',
    );
    await registerSchemas(config, registry, [...finding, ...event]);
    const serde = new AvroSerde(registry);
    const { id } = await serde.writerFor(FindingType);
    await serde.writerFor('agentstreams.test.Event');
    const type = avro.Type.forSchema(finding[0]!.schema as avro.Schema);
    const framed = (value: Finding): Buffer => {
      const header = Buffer.alloc(5);
      header.writeInt32BE(id, 1);
      return Buffer.concat([header, type.toBuffer(value)]);
    };

    const good = Array.from({ length: GOOD }, (_, i) => findingAt(i));
    const messages = good.map((f) => ({ key: f.symbol, value: serde.encode(FindingType, f), headers: { marker: '' } }));
    const expectedBad = new Map<string, { stage: string; code: string }>();
    for (let i = 0; i < 5; i += 1) {
      // Out of its documented range: avsc writes it, the serde's range check refuses it when decoding.
      expectedBad.set(`range-${i}`, { stage: 'deserialize', code: 'AS_DESERIALIZE' });
      messages.splice(i * 500 + 3, 0, {
        key: 'S1',
        value: framed({ ...findingAt(GOOD + i), windowStart: 5 }),
        headers: { marker: `range-${i}` },
      });
      expectedBad.set(`raw-${i}`, { stage: 'deserialize', code: 'AS_DESERIALIZE' });
      messages.splice(i * 500 + 7, 0, {
        key: 'S2',
        value: Buffer.from(`not avro ${i}`),
        headers: { marker: `raw-${i}` },
      });
      expectedBad.set(`event-${i}`, { stage: 'route', code: 'AS_NO_ROUTE' });
      messages.splice(i * 500 + 11, 0, {
        key: 'S3',
        value: serde.encode('agentstreams.test.Event', { key: `S${i}`, eventTime: 1, amount: i }),
        headers: { marker: `event-${i}` },
      });
    }
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic, acks: -1, messages });
    await producer.disconnect();

    const sink = await runClickHouseSink({
      config: testConfig,
      name: group,
      topics: [topic],
      deadLetterTopic,
      mappings: { [FindingType]: findingColumns },
      writer: { maxBatchRows: 1_000, maxBatchAgeMs: 50 },
    });
    handles.push(sink);
    const deadline = Date.now() + 60_000;
    while (sink.stats.records < messages.length) {
      if (Date.now() > deadline) throw new Error(`consumed ${sink.stats.records} of ${messages.length}`);
      await sleep(50);
    }
    await sink.checkpoint();
    await sink.stop();
    expect(sink.stats.transcoded).toBe(GOOD);
    expect(sink.stats.deadLettered).toBe(expectedBad.size);

    // The table holds, for each good finding, the row findingRow gives for its record (offset and timestamp).
    const rows = await (
      await client.query({
        query: `SELECT finding_id, agent, rule, symbol, portfolio_id, toString(severity) AS severity,
          toUInt32(window_start) AS window_start, toUInt32(window_end) AS window_end, toUInt32(event_time) AS event_time,
          event_time_ms, evidence, source_topic, source_partition, source_offset, toUInt32(created_at) AS created_at,
          version FROM findings FINAL`,
        format: 'JSONEachRow',
      })
    ).json<Record<string, unknown>>();
    expect(rows).toHaveLength(GOOD);
    const stored = new Map(rows.map((r) => [r.finding_id as string, r]));
    const consumer = kafka.consumer({ groupId: uniqueName('decl-reader'), maxWaitTimeInMs: 100 });
    const seen: Array<{ row: Record<string, unknown>; marker: string }> = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message, partition }) => {
        if (String(message.headers?.marker ?? '') !== '') return;
        const value = (await serde.decode<Finding>(message.value)).value;
        const row = findingRow(value, {
          topic,
          partition,
          offset: message.offset,
          timestamp: message.timestamp,
          key: message.key,
          recordType: FindingType,
        });
        seen.push({ row: row as unknown as Record<string, unknown>, marker: '' });
      },
    });
    const until = Date.now() + 30_000;
    while (seen.length < GOOD && Date.now() < until) await sleep(100);
    await consumer.disconnect();
    expect(seen).toHaveLength(GOOD);
    for (const { row } of seen) {
      const got = stored.get(row.finding_id as string);
      expect(got, row.finding_id as string).toBeDefined();
      // JSONEachRow: 64-bit integers come as strings unless the server says otherwise.
      expect(Object.fromEntries(Object.entries(got!).map(([k, v]) => [k, String(v)]))).toEqual(
        Object.fromEntries(Object.entries(row).map(([k, v]) => [k, String(v)])),
      );
    }

    // The bad records are dead letters with the reasons the generic path gives.
    const dead: Array<Record<string, string>> = [];
    const reader = kafka.consumer({ groupId: uniqueName('decl-dlq'), maxWaitTimeInMs: 100 });
    await reader.connect();
    await reader.subscribe({ topic: deadLetterTopic, fromBeginning: true });
    await reader.run({
      eachMessage: async ({ message }) => {
        dead.push(Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])));
      },
    });
    const dlqUntil = Date.now() + 30_000;
    while (dead.length < expectedBad.size && Date.now() < dlqUntil) await sleep(100);
    await reader.disconnect();
    expect(
      new Map(dead.map((h) => [h.marker, { stage: h[deadLetterHeader.stage], code: h[deadLetterHeader.errorCode] }])),
    ).toEqual(expectedBad);
  }, 120_000);

  it('refuses at start a declaration that does not match the table, naming the columns', async () => {
    const { finding_id: _left, ...rest } = findingColumns.columns;
    const wrong = mapColumns('findings', { ...rest, extra: { field: 'summary' } });
    const error = await runClickHouseSink({
      config: testConfig,
      name: `${group}-wrong`,
      topics: [topic],
      deadLetterTopic,
      mappings: { [FindingType]: wrong },
    }).then(
      () => undefined,
      (e: unknown) => e as AgentStreamsError,
    );
    expect(error?.code).toBe(ErrorCode.SINK_OPTIONS_INVALID);
    expect(error?.message).toMatch(/misses column\(s\) finding_id; the table has no column\(s\) extra/);
  });
});
