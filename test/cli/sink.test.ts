/**
 * `agent-streams sink <topology>` for a topology that is not the market fleet (test/fixtures/topologies/event-sink.ts):
 * the records on the topic it declares under `sink.clickhouse` reach ClickHouse as the rows its own mapping makes,
 * in a table of its own (created before the sink starts, as the user's DDL would); SIGTERM stops the sink cleanly.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaAdmin, KafkaPort } from '../../runtime/kafka/port.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { EventType, type Event } from '../fixtures/topologies/event-sink.ts';
import { root } from '../support/cli.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';

const FIXTURE = 'test/fixtures/topologies/event-sink.ts';
const COUNT = 500;
const T0 = Date.UTC(2026, 0, 5, 9, 0);

describe('agent-streams sink: a topology of its own, its own table', () => {
  const app = uniqueName('evsink').replaceAll('_', '-');
  const topic = `${app}.events`;
  const database = uniqueName('as_evsink');
  const admin = openClickHouse(config, { database: null });
  let kafka: KafkaPort;
  let kafkaAdmin: KafkaAdmin;

  beforeAll(async () => {
    await admin.command({ query: `CREATE DATABASE ${database}` });
    await admin.command({
      query: `CREATE TABLE ${database}.event_amounts (event_key String, event_time DateTime, amount Int64, source String, version UInt64)
              ENGINE = ReplacingMergeTree(version) ORDER BY (event_key, source)`,
    });
    kafka = kafkaClient();
    kafkaAdmin = kafka.admin();
    await kafkaAdmin.connect();
    await kafkaAdmin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  });

  afterAll(async () => {
    await kafkaAdmin?.deleteTopics({ topics: [topic, `${app}.dead-letters`] }).catch(() => undefined);
    await kafkaAdmin?.deleteGroups([`${app}.clickhouse-sink`]).catch(() => undefined);
    await kafkaAdmin?.disconnect();
    await admin.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await admin.close();
  });

  it('writes every record of the declared topic as the row its mapping makes, exactly once as queried', async () => {
    const registry = registryClient(config);
    await registerSchemas(
      config,
      registry,
      loadSchemas(join(root, 'test/fixtures/schemas')).filter((s) => s.subject === EventType),
    );
    const serde = new AvroSerde(registry);
    await serde.writerFor(EventType);
    const events: Event[] = Array.from({ length: COUNT }, (_, i) => ({
      key: `k${String(i).padStart(3, '0')}`,
      eventTime: T0 + i * 1_500,
      amount: i * 7 - 100,
    }));
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: events.map((e) => ({ key: e.key, value: serde.encode(EventType, e) })),
    });
    await producer.disconnect();

    const child = spawn(process.execPath, [join(root, 'cli/bin.mjs'), 'sink', FIXTURE], {
      cwd: root,
      env: {
        ...process.env,
        AS_FIXTURE_APP: app,
        AS_CLICKHOUSE_DATABASE: database,
        AS_CLICKHOUSE_SINK_USER: '',
        AS_METRICS_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const client = openClickHouse({ ...config, clickhouse: { ...config.clickhouse, database } });
    try {
      const count = async (): Promise<number> => {
        const result = await client.query({ query: 'SELECT count() AS n FROM event_amounts FINAL', format: 'JSON' });
        return Number(((await result.json()) as { data: Array<{ n: string | number }> }).data[0]!.n);
      };
      const deadline = Date.now() + 90_000;
      while ((await count()) < COUNT && Date.now() < deadline && child.exitCode === null) await sleep(500);
      expect(await count(), output).toBe(COUNT);

      const result = await client.query({
        query:
          'SELECT event_key, toUnixTimestamp(event_time) AS t, amount, source FROM event_amounts FINAL ORDER BY event_key',
        format: 'JSONEachRow',
      });
      const rows = (await result.json()) as Array<{
        event_key: string;
        t: number;
        amount: string | number;
        source: string;
      }>;
      expect(rows.map((r) => [r.event_key, Number(r.t), Number(r.amount)])).toEqual(
        events.map((e) => [e.key, Math.floor(e.eventTime / 1000), e.amount]),
      );
      // The mapping's record metadata: each row names its own record, topic/partition/offset, all distinct.
      expect(rows.every((r) => new RegExp(`^${topic.replaceAll('.', '\\.')}/[01]/\\d+$`).test(r.source))).toBe(true);
      expect(new Set(rows.map((r) => r.source)).size).toBe(COUNT);
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
      await client.close();
    }
    expect(await exited, output).toBe(0);
    expect(output).toMatch(/"event":"stopped"/);
  }, 150_000);
});
