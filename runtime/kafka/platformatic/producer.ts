/**
 * The port's producer on @platformatic/kafka: sends, and transactions whose first use initialises the producer id
 * (fencing earlier producers with the same transactional id and completing their open transaction).
 */
import {
  FindCoordinatorKeyTypes,
  kGetApi,
  kGetBootstrapConnection,
  kGetConnection,
  murmur2,
  Producer,
  ProtocolError,
  type Connection,
  type MessageToProduce,
  type ProduceResult,
} from '@platformatic/kafka';
import type { Message, ProducerConfig, ProducerRecord, RecordMetadata, TopicMessages } from 'kafkajs';
import type { KafkaProducer, KafkaTransaction } from '../port.ts';
import { baseOptions, logClientEvents, translated, unsupported, type ClientContext } from './common.ts';

/** kafkajs' producer settings this adapter honours; any other one set is refused. */
const HONOURED = new Set([
  'transactionalId',
  'idempotent',
  'maxInFlightRequests',
  'transactionTimeout',
  'allowAutoTopicCreation',
  'retry',
]);

type Headers = Map<Buffer, Buffer>;
type Transaction = Awaited<ReturnType<Producer['beginTransaction']>>;

const toBuffer = (value: Buffer | string | null | undefined): Buffer | undefined =>
  value === null || value === undefined ? undefined : Buffer.isBuffer(value) ? value : Buffer.from(value);

/**
 * kafkajs' default partitioner, which is the Java client's: murmur2 of the key, made positive by masking the sign
 * bit, modulo the partition count (platformatic takes the modulo); keyless records go round-robin. platformatic's
 * own default partitioner uses `>>> 0` instead of the mask, which puts a key on another partition whenever its hash
 * is negative: records would change partition with the client that wrote them.
 */
function javaPartitioner(): (message: MessageToProduce<Buffer, Buffer, Buffer, Buffer>, key?: Buffer) => number {
  const next = new Map<string, number>();
  return (message, key) => {
    if (key && key.length > 0) return murmur2(key, false) & 0x7fffffff;
    const n = next.get(message.topic) ?? 0;
    next.set(message.topic, (n + 1) & 0x7fffffff);
    return n;
  };
}

function toMessage(topic: string, message: Message): MessageToProduce<Buffer, Buffer, Buffer, Buffer> {
  let headers: Headers | undefined;
  if (message.headers) {
    headers = new Map();
    for (const [name, value] of Object.entries(message.headers)) {
      if (value === undefined) continue;
      // Distinct key objects: a header repeated with several values stays repeated.
      for (const one of Array.isArray(value) ? value : [value]) headers.set(Buffer.from(name), toBuffer(one)!);
    }
  }
  return {
    topic,
    ...(message.key !== undefined && message.key !== null ? { key: toBuffer(message.key) } : {}),
    ...(message.value !== null ? { value: toBuffer(message.value) } : {}),
    ...(message.partition !== undefined ? { partition: message.partition } : {}),
    ...(message.timestamp !== undefined ? { timestamp: BigInt(message.timestamp) } : {}),
    ...(headers ? { headers } : {}),
  };
}

function toMetadata(result: ProduceResult): RecordMetadata[] {
  return (result.offsets ?? []).map(({ topic, partition, offset }) => ({
    topicName: topic,
    partition,
    errorCode: 0,
    baseOffset: String(offset),
    logAppendTime: '-1',
    logStartOffset: '-1',
  }));
}

const call = <T>(fn: (callback: (error: Error | null, result?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result as T))));

interface ApiFn {
  (...args: unknown[]): void;
}

type Internal = Producer & {
  [kGetApi](name: string, callback: (error: Error | null, api?: ApiFn) => void): void;
  [kGetConnection](
    broker: { host: string; port: number },
    callback: (error: Error | null, c?: Connection) => void,
  ): void;
  [kGetBootstrapConnection](callback: (error: Error | null, c?: Connection) => void): void;
};

async function api<T>(producer: Producer, name: string, connection: Connection, ...args: unknown[]): Promise<T> {
  const internal = producer as Internal;
  const fn = await call<ApiFn>((cb) => internal[kGetApi](name, cb));
  return call<T>((cb) => fn(connection, ...args, cb));
}

interface CoordinatorResponse {
  coordinators: Array<{ key: string; nodeId: number; host: string; port: number; errorCode: number }>;
}

/** The group coordinator's connection, for TxnOffsetCommit (platformatic's own path commits one offset per request and drops the metadata). */
async function groupCoordinator(producer: Producer, groupId: string): Promise<Connection> {
  const internal = producer as Internal;
  const bootstrap = await call<Connection>((cb) => internal[kGetBootstrapConnection](cb));
  const response = await api<CoordinatorResponse>(
    producer,
    'FindCoordinator',
    bootstrap,
    FindCoordinatorKeyTypes.GROUP,
    [groupId],
  );
  const found = response.coordinators.find((c) => c.key === groupId)!;
  return call<Connection>((cb) => internal[kGetConnection]({ host: found.host, port: found.port }, cb));
}

interface TxnOffsetCommitResponse {
  topics: Array<{ name: string; partitions: Array<{ partitionIndex: number; errorCode: number }> }>;
}

export function platformaticProducer(context: ClientContext, config: ProducerConfig = {}): KafkaProducer {
  for (const [name, value] of Object.entries(config))
    if (value !== undefined && !HONOURED.has(name))
      throw unsupported(`producer option ${name}`, 'the adapter does not map it to @platformatic/kafka');
  const transactionalId = config.transactionalId;
  const idempotent = Boolean(config.idempotent || transactionalId);
  if (idempotent && (config.maxInFlightRequests ?? 1) !== 1)
    throw unsupported(
      `maxInFlightRequests=${config.maxInFlightRequests} with an idempotent producer`,
      'platformatic sends one request at a time',
    );
  const producer = new Producer({
    ...baseOptions(context, config.retry),
    idempotent,
    ...(transactionalId ? { transactionalId } : {}),
    autocreateTopics: config.allowAutoTopicCreation ?? true,
    partitioner: javaPartitioner(),
    // platformatic sends `timeout` as InitProducerId's transaction timeout (and as the produce timeout): the
    // transaction timeout must be the one asked for (kafkajs' default 60 s), not the 5 s request default.
    ...(transactionalId ? { timeout: config.transactionTimeout ?? 60_000 } : {}),
  });
  logClientEvents(producer, producer.clientId, context.options.logLevel === 0);

  const produce = (messages: MessageToProduce<Buffer, Buffer, Buffer, Buffer>[], acks: number | undefined) =>
    translated(async () => {
      if (messages.length === 0) return [];
      const send = (producer.transaction ?? producer) as Pick<Producer, 'send'>;
      return toMetadata(await send.send({ messages, acks: idempotent ? -1 : (acks ?? -1) }));
    });
  const checkAcks = (acks: number | undefined): void => {
    if (idempotent && acks !== undefined && acks !== -1)
      throw unsupported(`acks=${acks} on an idempotent producer`, 'idempotence needs acks=-1');
  };
  const send = (record: ProducerRecord): Promise<RecordMetadata[]> => {
    checkAcks(record.acks);
    return produce(
      record.messages.map((m) => toMessage(record.topic, m)),
      record.acks,
    );
  };
  const sendBatch = (batch: { topicMessages?: TopicMessages[]; acks?: number }): Promise<RecordMetadata[]> => {
    checkAcks(batch.acks);
    return produce(
      (batch.topicMessages ?? []).flatMap(({ topic, messages }) => messages.map((m) => toMessage(topic, m))),
      batch.acks,
    );
  };

  let current: Transaction | undefined;
  const transaction = async (): Promise<KafkaTransaction> => {
    if (!transactionalId) throw unsupported('transaction() without transactionalId', 'transactions need an id');
    if (current && !current.completed)
      throw new Error(`Transactional producer ${transactionalId} already has a transaction in progress`);
    // The first transaction initialises the producer id (InitProducerId with no producer id or epoch: -1, so that
    // the coordinator bumps the epoch of whatever producer held this id, fencing it and completing its transaction).
    const txn = await translated(() => producer.beginTransaction({ producerId: -1n, producerEpoch: -1 }));
    current = txn;
    // Whether the coordinator knows of this transaction (a partition or a group was added to it). One it does not
    // know ends locally, as in kafkajs: platformatic would send EndTxn, which the coordinator refuses with
    // INVALID_TXN_STATE (the runner's initialising `transaction()` + `abort()` is such a transaction).
    let started = false;
    const end = async (commit: boolean): Promise<void> => {
      await translated(() => (!started ? txn.cancel() : commit ? txn.commit() : txn.abort()));
    };
    return {
      send: (record) => {
        if (record.messages.length > 0) started = true;
        return send(record);
      },
      sendBatch: (batch) => {
        if ((batch.topicMessages ?? []).some((t) => t.messages.length > 0)) started = true;
        return sendBatch(batch);
      },
      sendOffsets: async ({ consumerGroupId, topics }) =>
        translated(async () => {
          started = true;
          await txn.addConsumer({ groupId: consumerGroupId } as never);
          const connection = await groupCoordinator(producer, consumerGroupId);
          const response = await api<TxnOffsetCommitResponse>(
            producer,
            'TxnOffsetCommit',
            connection,
            transactionalId,
            consumerGroupId,
            producer.producerId,
            producer.producerEpoch,
            -1,
            '',
            null,
            topics.map(({ topic, partitions }) => ({
              name: topic,
              partitions: partitions.map((p) => ({
                partitionIndex: p.partition,
                committedOffset: BigInt(p.offset),
                committedLeaderEpoch: -1,
                committedMetadata: (p as { metadata?: string | null }).metadata ?? null,
              })),
            })),
          );
          const failed = response.topics.flatMap((t) => t.partitions).find((p) => p.errorCode !== 0);
          if (failed) throw new ProtocolError(failed.errorCode);
        }),
      commit: () => end(true),
      abort: () => end(false),
      isActive: () => !txn.completed,
    } as KafkaTransaction;
  };

  return {
    connect: () =>
      translated(async () => {
        await producer.metadata({ topics: [] });
      }),
    disconnect: () =>
      translated(async () => {
        await producer.close();
      }),
    send,
    sendBatch: sendBatch as KafkaProducer['sendBatch'],
    transaction,
  };
}
