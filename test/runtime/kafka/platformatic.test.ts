/**
 * What the @platformatic/kafka adapter (runtime/kafka/platformatic/) does beyond the port's contract
 * (port-contract.test.ts, which runs on every client): it fetches and hands out batches itself, so it decides when a
 * batch in flight is stale: once its partition is revoked by a rebalance.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logLevel } from 'kafkajs';
import { platformaticClient } from '../../../runtime/kafka/platformatic.ts';
import type { KafkaPort } from '../../../runtime/kafka/port.ts';
import { config, uniqueName } from '../../support/stack.ts';

const plt: KafkaPort = platformaticClient(
  config,
  'plt-test',
  { logLevel: logLevel.NOTHING },
  { sasl: undefined, tls: undefined },
);
const admin = plt.admin();

async function createTopic(partitions = 1): Promise<string> {
  const topic = uniqueName('plt');
  await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
    waitForLeaders: true,
  });
  return topic;
}

beforeAll(async () => {
  await admin.connect();
});
afterAll(async () => {
  await admin.disconnect();
});

describe('platformatic adapter: consumer', () => {
  it('marks a batch in flight stale once its partition is revoked by a rebalance', async () => {
    const topic = await createTopic(2);
    const producer = plt.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: [0, 1].map((partition) => ({ partition, value: `p${partition}` })),
    });
    await producer.disconnect();
    const groupId = uniqueName('plt-stale');
    const settings = {
      groupId,
      readUncommitted: false,
      maxWaitTimeInMs: 100,
      sessionTimeout: 10_000,
      heartbeatInterval: 300,
    };
    const first = plt.consumer(settings);
    const second = plt.consumer(settings);
    const joins: Array<Record<string, number[]>> = [];
    first.on(first.events.GROUP_JOIN, ({ payload }) => joins.push(payload.memberAssignment));
    let rebalancing = 0;
    first.on(first.events.REBALANCING, () => (rebalancing += 1));
    const outcome = new Map<number, boolean>();
    await first.connect();
    await first.subscribe({ topic, fromBeginning: true });
    await first.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 2,
      eachBatch: async ({ batch, isStale }) => {
        // Held until the rebalance has moved one partition away (or 20 s).
        const deadline = Date.now() + 20_000;
        while (joins.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 200));
        outcome.set(batch.partition, isStale());
      },
    });
    while (joins.length < 1) await new Promise((r) => setTimeout(r, 50));
    await second.connect();
    await second.subscribe({ topic, fromBeginning: true });
    await second.run({ autoCommit: false, eachBatch: async () => {} });
    const deadline = Date.now() + 25_000;
    while (outcome.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await Promise.all([first.disconnect(), second.disconnect()]);
    expect(joins[0]).toEqual({ [topic]: [0, 1] });
    expect(rebalancing).toBeGreaterThan(0);
    const kept = joins[1]![topic]!;
    expect(kept).toHaveLength(1);
    // The safety property: the batch of the partition that moved away is stale, so the runtime aborts its commit.
    // (kafkajs would also report the kept partition's batch as not stale; this adapter may report it stale too,
    // which costs a re-processed batch, never a duplicate: see docs/kafka-clients.md.)
    expect(outcome.get(1 - kept[0]!)).toBe(true);
    expect(outcome.size).toBe(2);
  }, 60_000);
});
