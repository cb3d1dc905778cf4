/**
 * Commit on an interval (AS_COMMIT_INTERVAL_MS): a partition's batches are gathered into one transaction, and each
 * batch reads the state the earlier, uncommitted ones left (the in-memory overlay). Here the interval is ten minutes
 * and the size bound 100 records, so a transaction commits only when the bound is reached, and the rest only when
 * the member stops. The crash cases (SIGKILL with batches gathered, rebalance) are in exactly-once.test.ts.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { Gauge } from 'prom-client';
import { Redis } from 'ioredis';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const KEYS = 5;
const SENDS = 40;
const PER_SEND = 10;
const TOTAL = SENDS * PER_SEND;
const MAX_RECORDS = 100;

async function total(gauge: Pick<Gauge, 'get'>): Promise<number> {
  const { values } = await gauge.get();
  return values.reduce((n, v) => n + v.value, 0);
}

describe('commit interval', () => {
  it('gathers batches into one transaction, each reading the uncommitted state before it; stop commits the rest', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('interval').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.sums`;
    // A running sum per key: every output depends on all the key's earlier records, across batch boundaries.
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 1 }, [output]: { partitions: 1 } },
      processors: {
        summer: processor({
          inputs: [input],
          outputs: { [output]: ['agentstreams.test.Event'] },
          stores: ['sums'],
          process: (record, ctx) => {
            const event = record.value as { key: string; eventTime: number; amount: number };
            const sums = ctx.store<number>('sums');
            const sum = (sums.get() ?? 0) + event.amount;
            sums.set(sum);
            ctx.forward({
              topic: output,
              key: record.key,
              recordType: 'agentstreams.test.Event',
              value: { ...event, amount: sum },
            });
          },
        }),
      },
    });
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 1 },
        { topic: output, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    // Many small record batches, so that the consumer (1 KiB a fetch) gets many batches.
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const expected = new Map<string, number[]>();
    const sums = new Map<string, number>();
    for (let s = 0; s < SENDS; s += 1) {
      const messages = Array.from({ length: PER_SEND }, (_, j) => {
        const i = s * PER_SEND + j;
        const key = `k${i % KEYS}`;
        const sum = (sums.get(key) ?? 0) + i;
        sums.set(key, sum);
        expected.set(key, [...(expected.get(key) ?? []), sum]);
        return {
          key,
          value: serde.encode('agentstreams.test.Event', { key, eventTime: 1_767_225_600_000 + i, amount: i }),
        };
      });
      await producer.send({ topic: input, acks: -1, messages });
    }
    await producer.disconnect();

    const metrics = createMetrics({ processMetrics: false });
    const handle = await runProcessor({
      config: {
        ...config,
        consumer: { ...config.consumer, maxBytesPerPartition: 1024 },
        commit: { intervalMs: 600_000, maxRecords: MAX_RECORDS },
      },
      topology,
      processor: 'summer',
      metrics,
    });
    let committedBeforeStop: number;
    try {
      // Commits come only from the size bound: whole transactions of at least MAX_RECORDS records.
      const deadline = Date.now() + 60_000;
      while (handle.stats.records < TOTAL - MAX_RECORDS + 1 && Date.now() < deadline) await sleep(100);
      committedBeforeStop = handle.stats.records;
      expect(committedBeforeStop).toBeGreaterThan(TOTAL - MAX_RECORDS);
    } finally {
      await handle.stop();
    }
    // Stopping committed what was gathered.
    expect(handle.stats.records).toBe(TOTAL);
    const transactions = await total(metrics.transactionsCommitted);
    expect(transactions).toBeLessThanOrEqual(TOTAL / MAX_RECORDS + 1);
    expect(handle.stats.batches).toBeGreaterThan(transactions);

    // Every running sum, in order, read_committed: the overlay gave each batch the uncommitted sums before it.
    const seen = new Map<string, number[]>();
    let count = 0;
    const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic: output, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const { key, amount } = (await serde.decode<{ key: string; amount: number }>(message.value)).value;
        const list = seen.get(key) ?? [];
        list.push(amount);
        seen.set(key, list);
        count += 1;
      },
    });
    const readDeadline = Date.now() + 30_000;
    while (count < TOTAL && Date.now() < readDeadline) await sleep(100);
    await sleep(500);
    await consumer.disconnect();
    await admin.disconnect();
    expect(seen).toEqual(expected);

    // Redis holds the final sums, at the last committed changelog offset.
    const redis = new Redis(config.redis.url);
    try {
      const prefix = `as:{${topology.groupId('summer')}:0}:s:sums:`;
      for (const [key, sum] of sums) {
        const raw = await redis.get(`${prefix}${key}`);
        expect(raw && (JSON.parse(raw) as { v: unknown }).v, key).toBe(sum);
      }
    } finally {
      redis.disconnect();
    }
  }, 120_000);
});
