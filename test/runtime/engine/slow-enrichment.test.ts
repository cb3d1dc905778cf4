/**
 * A slow enrichment service (an LLM that takes its time, a Batches poll) must not get the member evicted: the batch
 * waits without heartbeats otherwise, the group drops the member after its session timeout, the commit fails and
 * the batch is enriched again — the calls billed twice. Here one call takes twice the session timeout: every
 * record is still enriched exactly once and forwarded exactly once, and the member never rejoins.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const SESSION_TIMEOUT_MS = 6_000;

describe('slow enrichment on the real stack', () => {
  it('keeps the member in its group while a call takes twice the session timeout: each record enriched and forwarded once', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('slow-enrich').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.enriched`;
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 1 }, [output]: { partitions: 1 } },
      processors: {
        enricher: processor({
          inputs: [input],
          outputs: { [output]: ['agentstreams.test.Event'] },
          enrich: { service: 'slow', request: (record) => (record.value as { amount: number }).amount },
          process: (record, ctx) => {
            const event = record.value as { key: string; eventTime: number; amount: number };
            ctx.forward({
              topic: output,
              key: record.key,
              recordType: 'agentstreams.test.Event',
              value: { ...event, amount: ctx.answer<number>() ?? -1 },
            });
          },
        }),
      },
    });
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');

    const calls = new Map<string, number>();
    let first = true;
    const slow = async (requests: ReadonlyMap<string, unknown>): Promise<Map<string, unknown>> => {
      for (const offset of requests.keys()) calls.set(offset, (calls.get(offset) ?? 0) + 1);
      if (first) {
        first = false;
        await sleep(2 * SESSION_TIMEOUT_MS);
      }
      return new Map([...requests].map(([offset, amount]) => [offset, (amount as number) * 10]));
    };

    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: input, numPartitions: 1 },
        { topic: output, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const count = 20;
    await producer.send({
      topic: input,
      acks: -1,
      messages: Array.from({ length: count }, (_, i) => ({
        key: `k${i}`,
        value: serde.encode('agentstreams.test.Event', { key: `k${i}`, eventTime: 1_767_225_600_000 + i, amount: i }),
      })),
    });
    await producer.disconnect();

    const joins: number[] = [];
    const handle = await runProcessor({
      config: { ...config, consumer: { ...config.consumer, sessionTimeoutMs: SESSION_TIMEOUT_MS } },
      topology,
      processor: 'enricher',
      services: { slow },
      log: (event) => {
        if (event === 'group.join') joins.push(Date.now());
      },
    });
    try {
      const deadline = Date.now() + 90_000;
      while (handle.stats.records < count && Date.now() < deadline) await sleep(200);
      await sleep(2_000); // time for a second, wrong, round of enrichment to show
    } finally {
      await handle.stop();
    }
    expect(handle.stats.records).toBe(count);
    expect([...calls.values()].filter((n) => n !== 1)).toEqual([]); // no call repeated: nothing billed twice
    expect(calls.size).toBe(count);
    expect(joins).toHaveLength(1); // never evicted, never rejoined

    const seen: number[] = [];
    const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic: output, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) =>
        void seen.push(serde.decodeResolved<{ amount: number }>(message.value).value.amount),
    });
    const readDeadline = Date.now() + 30_000;
    while (seen.length < count && Date.now() < readDeadline) await sleep(100);
    await sleep(1_000);
    await consumer.disconnect();
    expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: count }, (_, i) => i * 10));
  }, 180_000);
});
