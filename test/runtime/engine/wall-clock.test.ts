/**
 * Windows of idle keys close by wall clock on the real stack: events whose windows ended minutes ago, and no
 * later event to move stream time, still produce their final counts.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { KafkaPort } from '../../../runtime/kafka/port.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');

/** A windowed count over a new 6-partition topic, with `amounts` produced for `key` in the window that began five minutes ago. */
async function setUp(prefix: string, key: string, amounts: number[]) {
  const kafka = kafkaClient();
  const application = uniqueName(prefix).replaceAll('_', '-');
  const input = `${application}.input`;
  const topology = windowCountTopology(application, input, { wallClockCloseIntervalMs: 500 });
  const registry = registryClient(config);
  await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
  const serde = new AvroSerde(registry);
  await serde.writerFor('agentstreams.test.Event');
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: input, numPartitions: 6 }], waitForLeaders: true });
  await admin.disconnect();
  const windowStart = Math.floor((Date.now() - 5 * 60_000) / 60_000) * 60_000;
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({
    topic: input,
    messages: amounts.map((n) => ({
      key,
      value: serde.encode('agentstreams.test.Event', { key, eventTime: windowStart + n * 1000, amount: n }),
    })),
  });
  await producer.disconnect();
  return { kafka, application, topology, windowStart };
}

/** Everything committed to `<application>.counts` until the first result, plus 1.5 s in which a second emission of the same window would show up. */
async function readCounts(kafka: KafkaPort, application: string): Promise<Array<Record<string, unknown>>> {
  const received: Array<Record<string, unknown>> = [];
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic: `${application}.counts`, fromBeginning: true });
  const reader = new AvroSerde(registryClient(config));
  await consumer.run({
    eachMessage: async ({ message }) =>
      void received.push((await reader.decode<Record<string, unknown>>(message.value)).value),
  });
  const deadline = Date.now() + 30_000;
  while (received.length === 0 && Date.now() < deadline) await sleep(200);
  await sleep(1500);
  await consumer.disconnect();
  return received;
}

describe('wall-clock window closing on the real stack', () => {
  it('emits the final count of an idle key without any later record', async () => {
    const { kafka, application, topology, windowStart } = await setUp('wall', 'idle', [1, 2, 3]);
    const handle = await runProcessor({ config, topology, processor: 'counter' });
    const received = await readCounts(kafka, application);
    await handle.stop();
    expect(received).toEqual([
      { key: 'idle', windowStart, windowEnd: windowStart + 60_000, count: 3, sum: 6, final: true },
    ]);
  }, 90_000);

  it('closes an idle window after a restart, when no record comes to the new member', async () => {
    const { kafka, application, topology, windowStart } = await setUp('wall-restart', 'quiet', [1, 2]);
    // The first member's clock stands inside the window: it counts the records and closes nothing.
    const first = await runProcessor({ config, topology, processor: 'counter', clock: () => windowStart + 30_000 });
    const deadline = Date.now() + 30_000;
    while (first.stats.records < 2 && Date.now() < deadline) await sleep(100);
    expect(first.stats.records).toBe(2);
    await first.stop();
    // The second member gets the partition back with no record to process; its wall clock is past the window.
    const second = await runProcessor({ config, topology, processor: 'counter' });
    const received = await readCounts(kafka, application);
    await second.stop();
    expect(received).toEqual([
      { key: 'quiet', windowStart, windowEnd: windowStart + 60_000, count: 2, sum: 3, final: true },
    ]);
  }, 120_000);
});
