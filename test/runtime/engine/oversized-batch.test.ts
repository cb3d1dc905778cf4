/**
 * A batch whose outputs and changelog together exceed the broker's message.max.bytes (1 MiB by default) must still
 * commit: the runtime splits its sends by bytes as well as by count. One send per batch used to be refused by the
 * broker (MESSAGE_TOO_LARGE) and retried forever, wedging the partition.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { SEND_BYTES, sendChunks } from '../../../runtime/kafka/send-chunks.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const PAD = 'x'.repeat(60_000);

describe('sends split by bytes', () => {
  it('keep order, count and every message, at most SEND_BYTES a chunk unless one message alone is bigger', () => {
    const messages = Array.from({ length: 30 }, (_, i) => ({
      key: `k${i}`,
      value: Buffer.alloc(i === 7 ? SEND_BYTES * 2 : 50_000),
    }));
    const chunks = sendChunks(messages);
    expect(chunks.flat()).toEqual(messages);
    for (const chunk of chunks) {
      const bytes = chunk.reduce((n, m) => n + m.value.length, 0);
      expect(bytes <= SEND_BYTES || chunk.length === 1).toBe(true);
    }
    expect(chunks.find((c) => c.some((m) => m.key === 'k7'))).toHaveLength(1);
    expect(
      sendChunks(Array.from({ length: 4500 }, (_, i) => ({ key: null, value: `${i}` }))).map((c) => c.length),
    ).toEqual([2000, 2000, 500]);
  });

  it('a batch with 3.6 MB of outputs and 3.6 MB of changelog on one partition commits, and every output is there', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('oversized').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.padded`;
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 1 }, [output]: { partitions: 1 } },
      processors: {
        padder: processor({
          inputs: [input],
          outputs: { [output]: ['agentstreams.test.Event'] },
          stores: ['padded'],
          process: (record, ctx) => {
            const event = record.value as { key: string; eventTime: number; amount: number };
            ctx.store<{ pad: string; amount: number }>('padded').set({ pad: PAD, amount: event.amount });
            ctx.forward({
              topic: output,
              key: `${record.key}:${PAD}`,
              recordType: 'agentstreams.test.Event',
              value: event,
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
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const count = 60;
    await producer.send({
      topic: input,
      acks: -1,
      messages: Array.from({ length: count }, (_, i) => ({
        key: `k${i}`,
        value: serde.encode('agentstreams.test.Event', { key: `k${i}`, eventTime: 1_767_225_600_000 + i, amount: i }),
      })),
    });
    await producer.disconnect();

    const errors: string[] = [];
    const handle = await runProcessor({
      config,
      topology,
      processor: 'padder',
      log: (event, fields) => event.includes('error') && errors.push(String(fields?.message)),
    });
    try {
      const deadline = Date.now() + 60_000;
      while (handle.stats.records < count && Date.now() < deadline) await sleep(200);
    } finally {
      await handle.stop();
    }
    expect(handle.stats.records).toBe(count);
    // All of it is on the output topic, committed.
    await admin.disconnect();
    const seen = new Set<string>();
    const consumer = kafka.consumer({
      groupId: uniqueName('reader'),
      readUncommitted: false,
      maxWaitTimeInMs: 100,
      maxBytesPerPartition: 8 * 1024 * 1024,
    });
    await consumer.connect();
    await consumer.subscribe({ topic: output, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void seen.add(message.key!.toString().split(':')[0]!) });
    const readDeadline = Date.now() + 30_000;
    while (seen.size < count && Date.now() < readDeadline) await sleep(100);
    await consumer.disconnect();
    expect(seen.size).toBe(count);
  }, 120_000);
});
