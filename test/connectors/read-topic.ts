/**
 * Reads a whole topic back (every partition up to its high watermark, isolation read_committed) and decodes it: what
 * the tests assert on. Transactional topics end in commit markers, which take an offset but are no record.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { config, uniqueName } from '../support/stack.ts';

export interface ReadRecord {
  partition: number;
  offset: number;
  key: string;
  recordType: string;
  value: Record<string, unknown>;
}

export async function readTopic(kafka: KafkaPort, topic: string, timeoutMs = 60_000): Promise<ReadRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map(
    offsets.filter((o) => Number(o.high) > Number(o.low)).map((o) => [o.partition, Number(o.high)]),
  );
  const out: ReadRecord[] = [];
  if (remaining.size === 0) return out;
  const serde = new AvroSerde(registryClient(config));
  const consumer = kafka.consumer({ groupId: uniqueName('read-topic'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let failure: unknown;
  let lastBatchAt = Date.now();
  await consumer.run({
    eachBatch: async ({ batch }) => {
      lastBatchAt = Date.now();
      try {
        await serde.resolve(batch.messages.map((m) => m.value));
        for (const m of batch.messages) {
          // Every record must decode: an undecodable one fails the read (and the test).
          const decoded = serde.decodeResolved<Record<string, unknown>>(m.value);
          out.push({
            partition: batch.partition,
            offset: Number(m.offset),
            key: m.key?.toString() ?? '',
            recordType: decoded.recordType,
            value: { ...decoded.value },
          });
          const high = remaining.get(batch.partition);
          if (high !== undefined && Number(m.offset) >= high - 1) remaining.delete(batch.partition);
        }
        const high = remaining.get(batch.partition);
        if (high !== undefined && Number(batch.lastOffset()) >= high - 1) remaining.delete(batch.partition);
      } catch (error) {
        failure ??= error;
      }
    },
  });
  const deadline = Date.now() + timeoutMs;
  // A marker fetched on its own reaches no eachBatch: a quiet spell after the last batch also ends the read.
  const quiet = (): boolean => out.length > 0 && Date.now() - lastBatchAt > 3000;
  while (remaining.size > 0 && failure === undefined && Date.now() < deadline && !quiet()) await sleep(50);
  await consumer.disconnect();
  if (failure) throw failure;
  if (remaining.size > 0 && !quiet())
    throw new Error(
      `readTopic(${topic}): partitions ${[...remaining.keys()].join(', ')} not read to their end within ${timeoutMs} ms`,
    );
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}
