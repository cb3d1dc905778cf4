/**
 * The sink's health tells the truth, as a processor member's does: not ready while its group rebalances, and not
 * live while records wait and no batch completes (here the schema registry cannot be reached, so no record can be
 * decoded); an idle sink is live, and a stop ends within its deadline even then.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaAdmin, KafkaPort } from '../../../runtime/kafka/port.ts';
import { migrateDatabase } from '../../../sinks/clickhouse/schema.ts';
import { findingRow } from '../../../processors/results/rows.ts';
import {
  mapTo,
  runClickHouseSink,
  type ClickHouseSinkHandle,
  type ClickHouseSinkOptions,
  type SinkHealth,
} from '../../../sinks/clickhouse/topic-sink.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { FindingType, type Finding } from '../../../schemas/generated/types.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { freePort } from '../../support/private-broker.ts';

const root = join(import.meta.dirname, '../../..');

const mappings: ClickHouseSinkOptions['mappings'] = {
  [FindingType]: mapTo<Finding>('findings', (finding, meta) => findingRow(finding, meta)),
};

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function finding(i: number): Finding {
  const windowStart = 1_767_225_600_000 + i * 60_000;
  return {
    findingId: `health-${i}`,
    agent: 'price-move',
    rule: 'rule-1',
    symbol: 'ACME',
    portfolioId: 'p1',
    severity: 'low',
    windowStart,
    windowEnd: windowStart + 60_000,
    eventTime: windowStart + 59_000,
    evidence: { return: -0.01 },
    summary: `finding ${i}`,
    sourceTopic: 'signals.price',
    sourcePartition: 0,
    sourceOffset: i,
  };
}

describe('ClickHouse sink health on the real stack', () => {
  const app = uniqueName('sinkhealth').replaceAll('_', '-');
  const topic = `${app}.findings`;
  let kafka: KafkaPort;
  let admin: KafkaAdmin;
  const handles: ClickHouseSinkHandle[] = [];

  beforeAll(async () => {
    await migrateDatabase(config, root);
    kafka = kafkaClient();
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  });
  afterAll(async () => {
    for (const h of handles) await h.stop().catch(() => undefined);
    await admin
      .deleteTopics({ topics: [topic, `${app}.dead-letters`, `${app}.stalled-dead-letters`] })
      .catch(() => undefined);
    await admin.disconnect();
  });

  it('is not ready while its group rebalances, and ready again after', async () => {
    const atRebalance: SinkHealth[] = [];
    let first: ClickHouseSinkHandle | undefined;
    const options = {
      config,
      name: `${app}.clickhouse-sink`,
      topics: [topic],
      deadLetterTopic: `${app}.dead-letters`,
      mappings,
    };
    const one = await runClickHouseSink({
      ...options,
      log: (event) => {
        if (event === 'group.rebalancing' && first) atRebalance.push(first.health());
      },
    });
    first = one;
    handles.push(one);
    await one.joined;
    await until('the first sink to be ready', () => one.health().ready);
    expect(one.health()).toEqual({ live: true, ready: true, problems: [] });
    const two = await runClickHouseSink(options);
    handles.push(two);
    await two.joined;
    await until('the first sink to hear of the rebalance', () => atRebalance.length > 0);
    expect(atRebalance[0]).toMatchObject({ live: true, ready: false, problems: ['rebalancing'] });
    await until('both sinks to be ready', () => one.health().ready && two.health().ready);
  }, 90_000);

  it('is not live while records wait and no batch completes, and live while idle', async () => {
    // Nothing listens on this port: the sink cannot resolve a schema, so no batch completes.
    const unreachable = {
      ...config,
      registry: { ...config.registry, url: `http://127.0.0.1:${await freePort()}/apis/ccompat/v7` },
    };
    const sink = await runClickHouseSink({
      config: unreachable,
      name: `${app}.stalled-sink`,
      topics: [topic],
      deadLetterTopic: `${app}.stalled-dead-letters`,
      mappings,
      stallMs: 2_000,
      stopTimeoutMs: 1_000,
    });
    try {
      await sink.joined;
      await until('the sink to be ready', () => sink.health().ready);
      // Idle for longer than the stall bound: still live.
      await sleep(2_500);
      expect(sink.health()).toMatchObject({ live: true, ready: true });

      const registry = registryClient(config);
      await registerSchemas(config, registry, loadSchemas(join(root, 'schemas')));
      const serde = new AvroSerde(registry);
      await serde.writerFor(FindingType);
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic,
        messages: Array.from({ length: 10 }, (_, i) => ({
          key: `k${i}`,
          value: serde.encode(FindingType, finding(i)),
        })),
      });
      await producer.disconnect();

      await until('the sink to report the stall', () => !sink.health().live, 30_000);
      expect(sink.health().problems.join()).toMatch(/no batch completed for \d+ s while \d+ records wait/);
      expect(sink.health().ready).toBe(false);
      expect(sink.stats.batches).toBe(0);
      // SIGTERM's stop ends although the batch still waits on the registry: nothing of it was written or committed.
      await sink.stop();
      expect(sink.state()).toBe('stopped');
      expect(sink.stats.commits).toBe(0);
    } finally {
      await sink.abort();
    }
  }, 90_000);
});
