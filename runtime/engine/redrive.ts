/**
 * Reading and re-driving dead letters. `listDeadLetters` shows what is in an application's dead-letter topic;
 * `redriveDeadLetters` sends each dead letter back to the topic it came from (after the cause was fixed: a
 * schema registered, a processor bug mended), for the consumer group that dead-lettered it only (other groups
 * reading that topic skip it), exactly once: the records are produced and the re-drive group's
 * position committed in one transaction, so a re-drive that crashes and is run again sends nothing twice.
 * A broker outage is ridden out for `kafka.outageToleranceMs` (runtime/engine/producer.ts): a transaction that
 * failed is run again only once the re-drive group's committed position shows it did not commit.
 */
import { randomUUID } from 'node:crypto';
import type { KafkaMessage } from 'kafkajs';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { deadLetterHeader, redriveHeader } from './dead-letter.ts';
import { TransactionalProducer } from './producer.ts';

export interface RedriveOptions {
  /** The consumer group of a processor (`topology.groupId`): a re-driven record is processed by that group only. */
  groupOf: (processor: string) => string;
  /** `config.kafka.outageToleranceMs`; default 60 s. */
  outageToleranceMs?: number;
  log?: (line: string) => void;
}

export interface DeadLetterView {
  partition: number;
  offset: string;
  key: string | null;
  source: { topic: string; partition: number; offset: string };
  processor: string;
  stage: string;
  errorCode: string;
  errorMessage: string;
  bytes: number;
}

function header(message: KafkaMessage, name: string): string {
  const value = message.headers?.[name];
  return value === undefined ? '' : String(value);
}

export function viewOf(partition: number, message: KafkaMessage): DeadLetterView {
  return {
    partition,
    offset: message.offset,
    key: message.key?.toString('utf8') ?? null,
    source: {
      topic: header(message, deadLetterHeader.topic),
      partition: Number(header(message, deadLetterHeader.partition)),
      offset: header(message, deadLetterHeader.offset),
    },
    processor: header(message, deadLetterHeader.processor),
    stage: header(message, deadLetterHeader.stage),
    errorCode: header(message, deadLetterHeader.errorCode),
    errorMessage: header(message, deadLetterHeader.errorMessage),
    bytes: message.value?.length ?? 0,
  };
}

/** Reads a topic from `fromOffset`s to its current end with a throw-away group; `visit` sees every message. */
async function readToEnd(
  kafka: KafkaPort,
  topic: string,
  groupId: string,
  visit: (partition: number, message: KafkaMessage) => Promise<boolean | void>,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)]));
  const committed = (await admin.fetchOffsets({ groupId, topics: [topic] }))[0]?.partitions ?? [];
  await admin.disconnect();
  // A committed position one short of the end is a transaction marker, not a record.
  const remaining = new Set(
    [...ends]
      .filter(
        ([p, end]) =>
          end - Math.max(Number(committed.find((c) => c.partition === p)?.offset ?? -1), 0) >= 2 ||
          (end > 0 && !committed.some((c) => c.partition === p && Number(c.offset) >= 0)),
      )
      .map(([p]) => p),
  );
  if (remaining.size === 0) return;
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    // Aborted transactions leave offsets no record will ever be read from, so "at the end" is also: joined,
    // and nothing more arrived for a while.
    let idle: NodeJS.Timeout | undefined;
    const finish = (): void => {
      clearTimeout(idle);
      clearTimeout(cap);
      resolve();
    };
    const rearm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(finish, 3_000);
    };
    const cap = setTimeout(finish, 120_000);
    consumer.on(consumer.events.GROUP_JOIN, rearm);
    consumer
      .run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          rearm();
          for (const message of batch.messages) {
            if ((await visit(batch.partition, message)) === false) return finish();
            resolveOffset(message.offset);
          }
          if (Number(batch.lastOffset()) >= (ends.get(batch.partition) ?? 0) - 2) remaining.delete(batch.partition);
          if (remaining.size === 0) finish();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
}

export async function listDeadLetters(kafka: KafkaPort, topic: string, limit: number): Promise<DeadLetterView[]> {
  const out: DeadLetterView[] = [];
  const groupId = `as-dlq-list-${randomUUID()}`;
  await readToEnd(kafka, topic, groupId, async (partition, message) => {
    out.push(viewOf(partition, message));
    return out.length < limit;
  });
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteGroups([groupId]).catch(() => undefined);
  await admin.disconnect();
  return out;
}

/** Re-drives every dead letter not yet re-driven by `redriveGroup`; returns how many were sent back. */
export async function redriveDeadLetters(
  kafka: KafkaPort,
  topic: string,
  redriveGroup: string,
  options: RedriveOptions,
): Promise<number> {
  const outage = {
    outageToleranceMs: options.outageToleranceMs ?? 60_000,
    ...(options.log ? { log: options.log } : {}),
  };
  const producer = new TransactionalProducer(kafka, `${redriveGroup}-${topic}`, outage);
  await producer.connect();
  const position = async (partition: number): Promise<number> => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchOffsets({ groupId: redriveGroup, topics: [topic] });
      return Number(offsets[0]?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
    } finally {
      await admin.disconnect();
    }
  };
  let sent = 0;
  try {
    await readToEnd(kafka, topic, redriveGroup, async (partition, message) => {
      const origin = header(message, deadLetterHeader.topic);
      if (!origin) return;
      const headers = Object.fromEntries(
        Object.entries(message.headers ?? {}).filter(
          ([name, value]) => value !== undefined && !name.startsWith('as.dlq.'),
        ),
      ) as Record<string, Buffer | string>;
      headers[redriveHeader.from] = `${topic}/${partition}/${message.offset}`;
      const processor = header(message, deadLetterHeader.processor);
      if (processor) headers[redriveHeader.group] = options.groupOf(processor);
      const next = Number(message.offset) + 1;
      await producer.run(
        async (txn) => {
          await txn.send({ topic: origin, acks: -1, messages: [{ key: message.key, value: message.value, headers }] });
          await txn.sendOffsets({
            consumerGroupId: redriveGroup,
            topics: [{ topic, partitions: [{ partition, offset: String(next) }] }],
          });
        },
        async () => (await position(partition)) >= next,
        { wait: true },
      );
      sent += 1;
    });
  } finally {
    await producer.disconnect();
  }
  return sent;
}
