/**
 * The Kafka client port: everything the runtime, the connectors, the sink and the CLI ask of a Kafka client, and
 * nothing more. Its shape is the subset of the kafkajs API they use (kafkajs is the reference implementation and the
 * default); another client library is adapted to it in its own module (`platformatic.ts`) and selected with
 * `AS_KAFKA_CLIENT`. Code outside `runtime/kafka/` names only these types, never a client library's.
 *
 * What an implementation must guarantee (docs/kafka-clients.md):
 * - `producer({ transactionalId })`: `transaction()` initialises the producer id on first use, which fences every
 *   earlier producer with that id and completes its open transaction; `sendOffsets` adds consumed offsets to the
 *   transaction; `commit`/`abort` end it.
 * - `consumer({ groupId })`: `run({ eachBatch })` hands fetched batches of one partition at a time, with
 *   `resolveOffset`, `heartbeat`, `isRunning` and `isStale`; nothing is committed unless asked (`autoCommit: false`);
 *   `readUncommitted: false` reads committed transactions only; the `GROUP_JOIN` event carries the member's
 *   assignment; `CRASH` says whether the client restarts by itself.
 * - `admin()`: topic creation and metadata, end offsets, and a group's committed offsets.
 */
import type {
  Admin,
  Consumer,
  ConsumerConfig,
  EachBatchPayload,
  IHeaders,
  IMemberAssignment,
  KafkaMessage,
  Message,
  Producer,
  ProducerConfig,
  ProducerRecord,
  RecordMetadata,
  Transaction,
} from 'kafkajs';

/** The client libraries behind the port (`AS_KAFKA_CLIENT`). */
export type KafkaClientName = 'kafkajs' | 'platformatic' | 'confluent';

export type KafkaAdmin = Pick<
  Admin,
  | 'connect'
  | 'disconnect'
  | 'listTopics'
  | 'createTopics'
  | 'fetchTopicMetadata'
  | 'fetchTopicOffsets'
  | 'fetchOffsets'
  | 'listGroups'
  | 'describeGroups'
  | 'deleteGroups'
  | 'deleteTopics'
  | 'describeCluster'
>;

export type KafkaTransaction = Pick<Transaction, 'send' | 'sendBatch' | 'sendOffsets' | 'commit' | 'abort'>;

export interface KafkaProducer extends Pick<Producer, 'connect' | 'disconnect' | 'send' | 'sendBatch'> {
  transaction(): Promise<KafkaTransaction>;
}

export type KafkaConsumer = Pick<
  Consumer,
  | 'connect'
  | 'disconnect'
  | 'subscribe'
  | 'run'
  | 'stop'
  | 'pause'
  | 'resume'
  | 'seek'
  | 'commitOffsets'
  | 'on'
  | 'events'
>;

/** A client: makes producers, consumers and admins for one set of brokers and credentials. */
export interface KafkaPort {
  /** Which library implements it. */
  readonly client: KafkaClientName;
  producer(config?: ProducerConfig): KafkaProducer;
  consumer(config: ConsumerConfig): KafkaConsumer;
  admin(): KafkaAdmin;
}

/** The consumer's event names, as kafkajs spells them: what `consumer.events` holds on every client. */
export const consumerEvents = {
  HEARTBEAT: 'consumer.heartbeat',
  COMMIT_OFFSETS: 'consumer.commit_offsets',
  GROUP_JOIN: 'consumer.group_join',
  FETCH_START: 'consumer.fetch_start',
  FETCH: 'consumer.fetch',
  START_BATCH_PROCESS: 'consumer.start_batch_process',
  END_BATCH_PROCESS: 'consumer.end_batch_process',
  CONNECT: 'consumer.connect',
  DISCONNECT: 'consumer.disconnect',
  STOP: 'consumer.stop',
  CRASH: 'consumer.crash',
  REBALANCING: 'consumer.rebalancing',
  RECEIVED_UNSUBSCRIBED_TOPICS: 'consumer.received_unsubscribed_topics',
  REQUEST: 'consumer.network.request',
  REQUEST_TIMEOUT: 'consumer.network.request_timeout',
  REQUEST_QUEUE_SIZE: 'consumer.network.request_queue_size',
} as const;

export type {
  ConsumerConfig,
  EachBatchPayload,
  IHeaders,
  IMemberAssignment,
  KafkaMessage,
  Message,
  ProducerConfig,
  ProducerRecord,
  RecordMetadata,
};
