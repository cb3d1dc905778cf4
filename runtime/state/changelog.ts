/**
 * The changelog: every state change a task commits is also written, in the same Kafka transaction as its
 * outputs, to a compacted topic partitioned like the input. It is what makes Kafka the source of truth and
 * Redis a rebuildable copy. Recovery replays only the range Redis has not applied:
 * (`ckpt.changelog`, the changelog offset recorded with the last committed input offset].
 */
import { randomUUID } from 'node:crypto';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { StateEntry } from '../engine/batch.ts';
import type { ProducedMessage } from '../engine/dead-letter.ts';

export const STREAM_TIME_KEY = '\u0000stream-time';

export function changelogMessages(
  topic: string,
  partition: number,
  changes: Map<string, StateEntry | null>,
  streamTime: number,
): ProducedMessage[] {
  const messages: ProducedMessage[] = [];
  for (const [key, entry] of changes)
    messages.push({ topic, partition, key, value: entry === null ? null : Buffer.from(JSON.stringify(entry)) });
  messages.push({ topic, partition, key: STREAM_TIME_KEY, value: Buffer.from(JSON.stringify(streamTime)) });
  return messages;
}

/** The changelog offsets a task believes written: Redis's checkpoint and its last commit's metadata (`-1`: none). */
export interface ChangelogClaims {
  checkpoint: number;
  committed: number;
}

/**
 * Fails loudly when the changelog partition ends before offsets the task has already seen written: the topic was
 * deleted and recreated (or truncated). Offsets are never reused in a live partition, so this cannot happen otherwise.
 * Left alone, every apply of the new, lower offsets would look like a replay below the Redis checkpoint — fenced —
 * and the state would silently stop changing. Rebuilding is no answer either: the changes it would need are gone
 * with the old topic, so Kafka no longer holds the truth for this task. Not retriable: an operator must act.
 */
export async function assertChangelogIntact(
  kafka: KafkaPort,
  topic: string,
  partition: number,
  claims: ChangelogClaims,
): Promise<void> {
  const claimed = Math.max(claims.checkpoint, claims.committed);
  if (claimed < 0) return;
  const admin = kafka.admin();
  await admin.connect();
  let end: number;
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    end = Number(offsets.find((o) => o.partition === partition)?.high ?? 0);
  } finally {
    await admin.disconnect();
  }
  // `end` is the next offset to be written: an intact partition holds every offset below it.
  if (claimed < end) return;
  throw new AgentStreamsError(
    ErrorCode.STATE_LOST,
    `Changelog ${topic}[${partition}] ends at offset ${end}, but this task's state was written up to offset ${claimed} ` +
      `(Redis checkpoint ${claims.checkpoint}, committed offset metadata ${claims.committed}): the changelog topic was deleted and recreated, or truncated, ` +
      `so the state it backed is lost and new changes would be fenced as replays. Processing stops. To start this processor's state afresh, ` +
      `stop its members, delete its Redis keys (as:{<group>:<partition>}:*) and reset its consumer group offsets; or restore the changelog topic.`,
    {
      retriable: false,
      details: { topic, partition, changelogEnd: end, checkpoint: claims.checkpoint, committed: claims.committed },
    },
  );
}

/**
 * True when a batch's changelog writes ended at or below the last offset the task had applied: the topic was
 * recreated while the task ran. The caller aborts the transaction with `changelogRegressed`'s error.
 */
export function changelogRegressed(
  topic: string,
  partition: number,
  batchEnd: number,
  applied: number,
): AgentStreamsError | undefined {
  if (batchEnd > applied) return undefined;
  return new AgentStreamsError(
    ErrorCode.STATE_LOST,
    `Changelog ${topic}[${partition}] took this batch's changes at offset ${batchEnd}, at or below offset ${applied} already applied: ` +
      `the changelog topic was deleted and recreated while the task ran, so its state is lost. The batch is aborted and processing stops; ` +
      `see docs/exactly-once.md (changelog topic recreated).`,
    { retriable: false, details: { topic, partition, batchEnd, applied } },
  );
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
  kafka: KafkaPort,
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
      const timer = setTimeout(
        () =>
          reject(
            new Error(`changelog ${topic}[${partition}] replay of ${from}..${to} did not finish in ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
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
                records.push({
                  offset,
                  key,
                  entry: null,
                  streamTime: JSON.parse(message.value!.toString('utf8')) as number,
                });
              } else {
                records.push({
                  offset,
                  key,
                  entry: message.value === null ? null : (JSON.parse(message.value.toString('utf8')) as StateEntry),
                });
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
