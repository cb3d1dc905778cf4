/**
 * The ClickHouse sink's metrics on the real stack: rows held by its writer (read at scrape time), its group's lag read
 * from the broker (up until the rows are committed, then 0), findings by agent and severity, alerts by severity, and
 * the newest digest hour per portfolio — which an amendment of an older hour does not move back.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import type { KafkaAdmin } from '../../../runtime/kafka/port.ts';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { runClickHouseSink, type ClickHouseSinkHandle } from '../../../sinks/clickhouse/topic-sink.ts';
import { observedFleetMappings } from '../../../processors/results/sink.ts';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import {
  AlertType,
  DigestType,
  FindingType,
  type Alert,
  type Digest,
  type Finding,
} from '../../../schemas/generated/types.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { findingId } from './findings.ts';

const root = join(import.meta.dirname, '../../..');
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 5, 10);

describe('ClickHouse sink metrics on the real stack', () => {
  const app = uniqueName('sinkmetrics').replaceAll('_', '-');
  const topics = { findings: `${app}.findings`, alerts: `${app}.alerts`, digests: `${app}.digests` };
  const database = uniqueName('as_sinkm');
  const testConfig = {
    ...config,
    clickhouse: { ...config.clickhouse, database },
    metrics: { ...config.metrics, lagIntervalMs: 250 },
  };
  let admin: KafkaAdmin;
  let client: ClickHouseClient;
  let handle: ClickHouseSinkHandle | undefined;

  beforeAll(async () => {
    await migrateDatabase(testConfig, root);
    client = openClickHouse(testConfig);
    admin = kafkaClient().admin();
    await admin.connect();
    await admin.createTopics({
      topics: Object.values(topics).map((topic) => ({ topic, numPartitions: 2 })),
      waitForLeaders: true,
    });
  });
  afterAll(async () => {
    await handle?.abort();
    await admin?.deleteTopics({ topics: [...Object.values(topics), `${app}.dead-letters`] }).catch(() => undefined);
    await admin?.disconnect();
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('reports buffered rows, lag, findings and alerts by severity, and the newest digest hour per portfolio', async () => {
    const registry = registryClient(config);
    await registerSchemas(
      config,
      registry,
      loadSchemas(join(root, 'schemas/fleet')).filter((s) => [FindingType, AlertType, DigestType].includes(s.subject)),
    );
    const serde = new AvroSerde(registry);
    for (const type of [FindingType, AlertType, DigestType]) await serde.writerFor(type);

    const severities = ['low', 'low', 'high', 'critical', 'low'] as const;
    const findings: Finding[] = severities.map((severity, i) => ({
      findingId: findingId('price-move', 'drop', `S${i}`, 'growth', T0 + i),
      agent: 'price-move',
      rule: 'drop',
      symbol: `S${i}`,
      portfolioId: 'growth',
      severity,
      windowStart: T0 + i,
      windowEnd: T0 + i + 60_000,
      eventTime: T0 + i + 59_000,
      evidence: { return: -0.03 },
      summary: `finding ${i}`,
      sourceTopic: 'signals.price',
      sourcePartition: 0,
      sourceOffset: i,
    }));
    const alert: Alert = {
      alertId: `alert-${app}`,
      findingIds: [findings[3]!.findingId],
      portfolioId: 'growth',
      symbol: 'S3',
      severity: 'critical',
      windowStart: T0,
      eventTime: T0 + 60_000,
      analysis: 'a',
      recommendedAction: 'b',
      model: 'rules-only',
      reason: '',
      modelDisagreed: false,
      rulesAnalysis: '',
    };
    const digest = (portfolioId: string, hourStart: number): Digest => ({
      digestId: `${app}-${portfolioId}-${hourStart}`,
      portfolioId,
      hourStart,
      findingCount: 1,
      alertCount: 0,
      bySeverity: { low: 1 },
      topFindings: [],
      summary: 's',
      model: 'rules-only',
    });
    const producer = kafkaClient().producer({ idempotent: true });
    await producer.connect();
    await producer.send({
      topic: topics.findings,
      acks: -1,
      messages: findings.map((f) => ({ key: f.symbol, value: serde.encode(FindingType, f) })),
    });
    await producer.send({
      topic: topics.alerts,
      acks: -1,
      messages: [{ key: 'S3', value: serde.encode(AlertType, alert) }],
    });
    // growth: hours 10 and 12, then an amendment of hour 11 (it must not move the gauge back); income: hour 9.
    await producer.send({
      topic: topics.digests,
      acks: -1,
      messages: [
        digest('growth', T0),
        digest('growth', T0 + 2 * HOUR),
        digest('growth', T0 + HOUR),
        digest('income', T0 - HOUR),
      ].map((d) => ({ key: d.portfolioId, value: serde.encode(DigestType, d) })),
    });
    await producer.disconnect();

    const metrics = createMetrics({ processMetrics: false });
    const name = `${app}.clickhouse-sink`;
    // Rows stay in the writer until the test asks for a checkpoint: nothing flushes them by size or age.
    handle = await runClickHouseSink({
      config: testConfig,
      name,
      topics: Object.values(topics),
      deadLetterTopic: `${app}.dead-letters`,
      mappings: observedFleetMappings(metrics),
      metrics,
      commitIntervalMs: 600_000,
      writer: { maxBatchAgeMs: 600_000 },
    });
    const text = async (): Promise<string> => metrics.registry.metrics();
    const value = (all: string, series: string): number | undefined => {
      const line = all.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    const lag = async (): Promise<number> =>
      (await metrics.consumerLag.get()).values
        .filter((v) => v.labels.processor === name)
        .reduce((n, v) => n + v.value, 0);

    const deadline = Date.now() + 60_000;
    while (handle.stats.records < 10 && Date.now() < deadline) await sleep(100);
    expect(handle.stats.records).toBe(10);
    let scraped = await text();
    expect(value(scraped, `agent_streams_sink_buffered_rows{processor="${name}"}`)).toBe(10);
    expect(value(scraped, `agent_streams_sink_buffered_bytes{processor="${name}"}`)).toBeGreaterThan(10 * 100);
    expect(value(scraped, 'agent_streams_findings_total{agent="price-move",severity="low"}')).toBe(3);
    expect(value(scraped, 'agent_streams_findings_total{agent="price-move",severity="critical"}')).toBe(1);
    expect(value(scraped, 'agent_streams_alerts_total{severity="critical"}')).toBe(1);
    expect(value(scraped, 'agent_streams_digest_last_hour_timestamp_seconds{portfolio="growth"}')).toBe(
      (T0 + 2 * HOUR) / 1000,
    );
    expect(value(scraped, 'agent_streams_digest_last_hour_timestamp_seconds{portfolio="income"}')).toBe(
      (T0 - HOUR) / 1000,
    );
    await sleep(750);
    expect(await lag()).toBe(10); // nothing committed yet

    await handle.checkpoint();
    scraped = await text();
    expect(value(scraped, `agent_streams_sink_buffered_rows{processor="${name}"}`)).toBe(0);
    const committed = Date.now() + 10_000;
    while ((await lag()) > 0 && Date.now() < committed) await sleep(100);
    expect(await lag()).toBe(0);
    expect(
      value(await text(), 'agent_streams_sink_operation_duration_seconds_count{operation="insert:findings"}'),
    ).toBeGreaterThan(0);
  }, 120_000);
});
