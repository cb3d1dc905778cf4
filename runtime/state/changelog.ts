/**
 * The changelog: every state change a task commits is also written, in the same Kafka transaction as its
 * outputs, to a compacted topic partitioned like the input. It is what makes Kafka the source of truth and
 * Redis a rebuildable copy. Recovery replays only the range Redis has not applied:
 * (`ckpt.changelog`, the changelog offset recorded with the last committed input offset].
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type { StateEntry } from '../engine/batch.ts';
import type { ProducedMessage } from '../engine/dead-letter.ts';

export const STREAM_TIME_KEY = '\u0000stream-time';

export function changelogMessages(topic: string, partition: number, changes: Map<string, StateEntry | null>, streamTime: number): ProducedMessage[] {
  const messages: ProducedMessage[] = [];
  for (const [key, entry] of changes) messages.push({ topic, partition, key, value: entry === null ? null : Buffer.from(JSON.stringify(entry)) });
  messages.push({ topic, partition, key: STREAM_TIME_KEY, value: Buffer.from(JSON.stringify(streamTime)) });
  return messages;
}

export interface ChangelogRecord {
  offset: number;
  key: string;
  entry: StateEntry | null;
  streamTime?: number;
}

/**
 * Reads committed changelog records of one partition with offsets in [from, to] and hands them over in
 * batches. Uses a throw-away consumer group that is deleted afterwards.
 */
export async function readChangelogRange(
  kafka: Kafka,
  topic: string,
  partition: number,
  from: number,
  to: number,
  onRecords: (records: ChangelogRecord[]) => Promise<void>,
  timeoutMs = 60_000,
): Promise<number> {
  if (to < from) return 0;
  const groupId = `as-restore-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 200 });
  let seen = 0;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`changelog ${topic}[${partition}] replay of ${from}..${to} did not finish in ${timeoutMs} ms`)), timeoutMs);
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        const mine = payload.memberAssignment[topic] ?? [];
        const others = mine.filter((p) => p !== partition);
        if (others.length > 0) consumer.pause([{ topic, partitions: others }]);
        consumer.seek({ topic, partition, offset: String(from) });
      });
      consumer
        .run({
          eachBatchAutoResolve: true,
          eachBatch: async ({ batch }) => {
            if (batch.partition !== partition) return;
            const records: ChangelogRecord[] = [];
            let done = false;
            for (const message of batch.messages) {
              const offset = Number(message.offset);
              if (offset < from) continue;
              if (offset > to) {
                done = true;
                break;
              }
              const key = message.key?.toString('utf8') ?? '';
              if (key === STREAM_TIME_KEY) {
                records.push({ offset, key, entry: null, streamTime: JSON.parse(message.value!.toString('utf8')) as number });
              } else {
                records.push({ offset, key, entry: message.value === null ? null : (JSON.parse(message.value.toString('utf8')) as StateEntry) });
              }
              if (offset === to) done = true;
            }
            seen += records.length;
            if (records.length > 0) await onRecords(records);
            if (done) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
  return seen;
}
