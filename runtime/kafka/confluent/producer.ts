/**
 * The port's producer on @confluentinc/kafka-javascript's KafkaJS-compatible producer.
 *
 * - A transactional producer initialises its producer id in `connect()` (the library calls librdkafka's
 *   `init_transactions` there), which fences every earlier producer with that transactional id and completes its open
 *   transaction; `transaction()` then begins one. The runtime connects, then calls `transaction()`: the fencing
 *   happens before its first transaction, as the port requires.
 * - `sendOffsets({ consumerGroupId, topics })`: librdkafka takes the consumer group's metadata from a consumer
 *   handle. The runtime hands a group id (as with kafkajs), so the offsets go with the metadata of an idle consumer
 *   handle of that group that never joins it (generation -1, no member id): the broker then checks the transactional
 *   producer's epoch only, exactly what kafkajs' TxnOffsetCommit does. Offset metadata is kept (the library's own
 *   `sendOffsets` drops it; the runtime records the changelog position in it).
 * - `acks`: librdkafka sets acknowledgements per producer (all, which idempotence requires); a send asking for
 *   another value is refused.
 */
import type { Message, ProducerConfig, ProducerRecord, RecordMetadata, TopicMessages } from 'kafkajs';
import type { KafkaProducer, KafkaTransaction } from '../port.ts';
import {
  baseConfig,
  confluentLibrary,
  kafkajsError,
  lowLevelConfig,
  refuseUnknown,
  translated,
  unsupported,
  type ClientContext,
  type RdLowLevelConsumer,
  type RdLowLevelProducer,
} from './common.ts';

interface LibProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  send(record: { topic: string; messages: Message[] }): Promise<RecordMetadata[]>;
  sendBatch(batch: { topicMessages: TopicMessages[] }): Promise<RecordMetadata[]>;
  transaction(): Promise<unknown>;
  commit(): Promise<void>;
  abort(): Promise<void>;
  _getInternalClient(): RdLowLevelProducer;
}

const PRODUCER_OPTIONS = [
  'transactionalId',
  'idempotent',
  'maxInFlightRequests',
  'transactionTimeout',
  'retry',
  'allowAutoTopicCreation',
  'metadataMaxAge',
] as const;

/** Idle consumer handles by group id, shared by a client's transactional producers (see the module comment). */
export class GroupHandles {
  private readonly handles = new Map<string, { ready: Promise<RdLowLevelConsumer>; users: number }>();

  constructor(private readonly context: ClientContext) {}

  acquire(groupId: string): Promise<RdLowLevelConsumer> {
    let entry = this.handles.get(groupId);
    if (!entry) {
      const { KafkaConsumer } = confluentLibrary();
      const consumer = new KafkaConsumer({
        ...lowLevelConfig(this.context),
        'group.id': groupId,
        'enable.auto.commit': false,
      });
      const ready = new Promise<RdLowLevelConsumer>((resolve, reject) =>
        consumer.connect(null, (error) => (error ? reject(kafkajsError(error)) : resolve(consumer))),
      );
      entry = { ready, users: 0 };
      this.handles.set(groupId, entry);
      ready.catch(() => {
        if (this.handles.get(groupId) === entry) this.handles.delete(groupId);
      });
    }
    entry.users += 1;
    return entry.ready;
  }

  async release(groupId: string): Promise<void> {
    const entry = this.handles.get(groupId);
    if (!entry) return;
    entry.users -= 1;
    if (entry.users > 0) return;
    this.handles.delete(groupId);
    const consumer = await entry.ready.catch(() => undefined);
    if (consumer) await new Promise<void>((resolve) => consumer.disconnect(() => resolve()));
  }
}

function copyMessages(messages: Message[]): Message[] {
  // The library rewrites the messages it is given (partition, value, timestamp, headers): a retry must resend ours.
  // A string key goes as a Buffer: the binding passes a string key to librdkafka as a C string, cutting it at the
  // first NUL (the changelog's stream-time key starts with one).
  return messages.map((m) => ({
    ...m,
    ...(typeof m.key === 'string' ? { key: Buffer.from(m.key, 'utf8') } : {}),
    ...(m.headers ? { headers: { ...m.headers } } : {}),
  }));
}

function checkSendOptions(what: string, options: { acks?: number; timeout?: number; compression?: unknown }): void {
  if (options.acks !== undefined && options.acks !== -1)
    throw unsupported(`${what} with acks=${options.acks}`, 'librdkafka acknowledges per producer, here acks=all');
  if (options.timeout !== undefined)
    throw unsupported(`${what} with a timeout`, 'librdkafka bounds a send by message.timeout.ms');
  if (options.compression !== undefined && options.compression !== 0)
    throw unsupported(`${what} with compression`, 'librdkafka sets compression per producer');
}

export function confluentProducer(
  context: ClientContext,
  groups: GroupHandles,
  config: ProducerConfig = {},
): KafkaProducer {
  refuseUnknown('producer', config, PRODUCER_OPTIONS);
  const { kafkaJS, rd } = baseConfig(context, config.retry);
  const { Kafka } = confluentLibrary().KafkaJS;
  const kafkaConfig: Record<string, unknown> = { ...kafkaJS };
  for (const key of PRODUCER_OPTIONS) if (key !== 'retry' && config[key] !== undefined) kafkaConfig[key] = config[key];
  if (config.transactionalId !== undefined) kafkaConfig.idempotent = true;
  const producer = new Kafka({}).producer({ kafkaJS: kafkaConfig, ...rd }) as LibProducer;
  const usedGroups = new Map<string, Promise<RdLowLevelConsumer>>();
  let inTransaction = false;

  const send = (record: ProducerRecord): Promise<RecordMetadata[]> => {
    const { topic, messages, ...options } = record;
    checkSendOptions('send', options);
    return translated(() => producer.send({ topic, messages: copyMessages(messages) }));
  };
  const sendBatch = (batch: {
    topicMessages?: TopicMessages[];
    acks?: number;
    timeout?: number;
    compression?: unknown;
  }): Promise<RecordMetadata[]> => {
    const { topicMessages = [], ...options } = batch;
    checkSendOptions('sendBatch', options);
    return translated(() =>
      producer.sendBatch({
        topicMessages: topicMessages.map(({ topic, messages }) => ({ topic, messages: copyMessages(messages) })),
      }),
    );
  };

  const transaction = async (): Promise<KafkaTransaction> => {
    if (config.transactionalId === undefined)
      throw unsupported('transaction() without a transactionalId', 'only a transactional producer has transactions');
    await translated(() => producer.transaction());
    inTransaction = true;
    const end = async (how: 'commit' | 'abort'): Promise<void> => {
      await translated(() => producer[how]());
      inTransaction = false;
    };
    return {
      send,
      sendBatch,
      sendOffsets: async ({ consumerGroupId, topics }) => {
        if (!consumerGroupId) throw unsupported('sendOffsets without consumerGroupId', 'the group is required');
        let handle = usedGroups.get(consumerGroupId);
        if (!handle) {
          handle = groups.acquire(consumerGroupId);
          usedGroups.set(consumerGroupId, handle);
          handle.catch(() => {
            usedGroups.delete(consumerGroupId);
            void groups.release(consumerGroupId);
          });
        }
        const consumer = await handle;
        const offsets = topics.flatMap(({ topic, partitions }) =>
          partitions.map(({ partition, offset, ...rest }) => {
            const metadata = (rest as { metadata?: string | null }).metadata;
            return { topic, partition, offset: Number(offset), ...(metadata ? { metadata } : {}) };
          }),
        );
        const timeoutMs = Math.max(5_000, config.transactionTimeout ?? 60_000);
        await new Promise<void>((resolve, reject) =>
          producer
            ._getInternalClient()
            .sendOffsetsToTransaction(offsets, consumer, timeoutMs, (error) =>
              error ? reject(kafkajsError(error)) : resolve(),
            ),
        );
      },
      commit: () => end('commit'),
      abort: () => end('abort'),
    };
  };

  return {
    connect: () => translated(() => producer.connect()),
    disconnect: async () => {
      try {
        if (inTransaction) await producer.abort().catch(() => undefined);
        await translated(() => producer.disconnect());
      } finally {
        for (const group of usedGroups.keys()) await groups.release(group);
        usedGroups.clear();
      }
    },
    send,
    sendBatch,
    transaction,
  };
}
