/**
 * The port's consumer on @confluentinc/kafka-javascript's KafkaJS-compatible consumer (librdkafka's group
 * membership, its fetcher and message cache, the library's `eachBatch` with `resolveOffset` and a seek back to the
 * first unresolved offset when a batch throws: kafkajs' redelivery).
 *
 * Differences from kafkajs, and how they are bridged:
 * - The library fixes `fromBeginning` (librdkafka's `auto.offset.reset`) and `autoCommit` when the consumer is
 *   created, while kafkajs takes them in `subscribe` and `run`: the library consumer is created and connected in
 *   `run()`, with what `subscribe` and `run` were given. `connect()` only checks that it comes first; a connection
 *   failure surfaces from `run()`.
 * - Events (the library has none): `GROUP_JOIN` (with the member's whole assignment) and `REBALANCING` come from
 *   librdkafka's rebalance callback (eager protocol: a revocation, then the new assignment). `GROUP_JOIN` listeners
 *   run before the assignment is applied: a `seek` they make becomes the partition's starting offset, a `pause` is
 *   applied right after; `CRASH` from a fatal
 *   librdkafka error (`restart: false`; librdkafka reconnects by itself from anything else) and from a throwing
 *   `eachBatch` (`restart: true`: the batch is read again from its first unresolved offset). Approximations:
 *   `FETCH_START` is emitted before each batch and once a second while the consumer runs (librdkafka fetches in the
 *   background, unseen); `FETCH` (`numberOfBatches: 1`) and `START_BATCH_PROCESS`/`END_BATCH_PROCESS` around each
 *   batch handed to `eachBatch`: a fetch that returns only transaction markers produces no event.
 * - `heartbeat()` does nothing (librdkafka heartbeats in its own thread); `stop()` stops handing batches (pauses
 *   the assignment and waits for the batches in flight); the group is left in `disconnect()`.
 * - Batches hold at most `BATCH_MAX_MESSAGES` records of one partition (the library's `js.consumer.max.batch.size`).
 */
import { EventEmitter } from 'node:events';
import type {
  ConsumerConfig,
  ConsumerRunConfig,
  ConsumerSubscribeTopic,
  ConsumerSubscribeTopics,
  EachBatchPayload,
  EachMessagePayload,
  IMemberAssignment,
  TopicPartitionOffsetAndMetadata,
} from 'kafkajs';
import { AgentStreamsError, ErrorCode } from '../../errors.ts';
import { consumerEvents, type KafkaConsumer } from '../port.ts';
import {
  baseConfig,
  confluentLibrary,
  kafkajsError,
  refuseUnknown,
  translated,
  unsupported,
  type ClientContext,
  type RdError,
} from './common.ts';

/** Records per batch: bounds one `eachBatch` call (kafkajs bounds it by `maxBytesPerPartition` alone). */
export const BATCH_MAX_MESSAGES = 5_000;

const CONSUMER_OPTIONS = [
  'groupId',
  'readUncommitted',
  'sessionTimeout',
  'heartbeatInterval',
  'rebalanceTimeout',
  'maxBytesPerPartition',
  'maxWaitTimeInMs',
  'minBytes',
  'maxBytes',
  'retry',
  'allowAutoTopicCreation',
  'metadataMaxAge',
] as const;

const RUN_OPTIONS = [
  'eachBatch',
  'eachMessage',
  'eachBatchAutoResolve',
  'autoCommit',
  'partitionsConsumedConcurrently',
] as const;

interface TopicPartitions {
  topic: string;
  partitions: number[];
}

interface LibConsumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  subscribe(subscription: { topics: string[] }): Promise<void>;
  run(config: Record<string, unknown>): Promise<void>;
  pause(topics: TopicPartitions[]): void;
  resume(topics: TopicPartitions[]): void;
  seek(offset: { topic: string; partition: number; offset: string }): void;
  commitOffsets(offsets?: TopicPartitionOffsetAndMetadata[]): Promise<void>;
  assignment(): Array<{ topic: string; partition: number }>;
  _getInternalClient(): { on(event: string, listener: (error: RdError) => void): void };
}

const ASSIGN = -175; // RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
const REVOKE = -174; // RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS

export function confluentConsumer(context: ClientContext, config: ConsumerConfig): KafkaConsumer {
  refuseUnknown('consumer', config, CONSUMER_OPTIONS);
  if (!config.groupId) throw unsupported('a consumer without groupId', 'librdkafka consumers belong to a group');
  const { kafkaJS, rd } = baseConfig(context, config.retry);
  const emitter = new EventEmitter();
  const emit = (type: string, payload: Record<string, unknown>): void => {
    emitter.emit(type, { id: 0, type, timestamp: Date.now(), payload });
  };
  let connected = false;
  let topics: string[] = [];
  let fromBeginning: boolean | undefined;
  let consumer: LibConsumer | undefined;
  let stopped = false;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const inFlight = new Set<Promise<unknown>>();
  const assigned = new Map<string, Set<number>>();
  const joinedAt = { since: Date.now() };

  const memberAssignment = (): IMemberAssignment =>
    Object.fromEntries([...assigned].map(([topic, ps]) => [topic, [...ps].sort((a, b) => a - b)]));

  // While GROUP_JOIN listeners run (inside the rebalance callback, before the library applies the assignment),
  // their seeks become the starting offsets of the assignment itself and their pauses wait until it is applied:
  // a librdkafka seek on a partition whose fetcher has not started yet fails (Local: Erroneous state).
  let joining: { seeks: Map<string, string>; pauses: TopicPartitions[] } | undefined;

  const rebalance = (
    error: RdError,
    assignment: Array<{ topic: string; partition: number }>,
  ): Array<{ topic: string; partition: number; offset?: number }> | undefined => {
    if (error.code === REVOKE) {
      emit(consumerEvents.REBALANCING, { groupId: config.groupId, memberId: '' });
      joinedAt.since = Date.now();
      for (const { topic, partition } of assignment) assigned.get(topic)?.delete(partition);
      return undefined;
    }
    if (error.code !== ASSIGN) return undefined;
    for (const { topic, partition } of assignment) {
      let ps = assigned.get(topic);
      if (!ps) assigned.set(topic, (ps = new Set()));
      ps.add(partition);
    }
    const join = { seeks: new Map<string, string>(), pauses: [] as TopicPartitions[] };
    joining = join;
    try {
      emit(consumerEvents.GROUP_JOIN, {
        duration: Date.now() - joinedAt.since,
        groupId: config.groupId,
        isLeader: false,
        leaderId: '',
        groupProtocol: 'roundrobin',
        memberId: '',
        memberAssignment: memberAssignment(),
      });
    } finally {
      joining = undefined;
    }
    if (join.pauses.length > 0)
      setImmediate(() => {
        try {
          consumer?.pause(join.pauses);
        } catch {
          // Disconnected meanwhile: nothing to pause.
        }
      });
    if (join.seeks.size === 0) return undefined;
    return assignment.map((tp) => {
      const offset = join.seeks.get(`${tp.topic}:${tp.partition}`);
      return offset === undefined ? tp : { ...tp, offset: Number(offset) };
    });
  };

  const started = (what: string): LibConsumer => {
    if (!consumer)
      throw new AgentStreamsError(
        ErrorCode.CONFIG_INVALID,
        `AS_KAFKA_CLIENT=confluent: ${what} before run() (the consumer joins its group in run()).`,
      );
    return consumer;
  };

  const run = async (runConfig: ConsumerRunConfig = {}): Promise<void> => {
    if (!connected) throw unsupported('run() before connect()', 'connect first');
    if (consumer) throw unsupported('a second run()', 'the consumer is already running');
    refuseUnknown('run', runConfig, RUN_OPTIONS);
    const { eachBatch, eachMessage } = runConfig;
    if (!eachBatch === !eachMessage)
      throw unsupported('run() without exactly one of eachBatch and eachMessage', 'kafkajs needs one');
    const { Kafka } = confluentLibrary().KafkaJS;
    const lib = new Kafka({}).consumer({
      kafkaJS: {
        ...kafkaJS,
        ...Object.fromEntries(
          CONSUMER_OPTIONS.filter((k) => k !== 'retry' && config[k] !== undefined).map((k) => [k, config[k]]),
        ),
        readUncommitted: config.readUncommitted ?? false,
        autoCommit: runConfig.autoCommit ?? true,
        ...(fromBeginning !== undefined ? { fromBeginning } : {}),
      },
      ...rd,
      'js.consumer.max.batch.size': BATCH_MAX_MESSAGES,
      rebalance_cb: rebalance,
    }) as LibConsumer;
    await translated(() => lib.connect());
    consumer = lib;
    lib._getInternalClient().on('event.error', (error: RdError) => {
      if (error.isFatal)
        emit(consumerEvents.CRASH, { error: kafkajsError(error), groupId: config.groupId, restart: false });
    });
    await translated(() => lib.subscribe({ topics }));
    stopped = false;
    ticker = setInterval(() => emit(consumerEvents.FETCH_START, { nodeId: -1 }), 1_000);
    ticker.unref();
    await translated(() =>
      lib.run({
        eachBatchAutoResolve: runConfig.eachBatchAutoResolve ?? true,
        partitionsConsumedConcurrently: runConfig.partitionsConsumedConcurrently ?? 1,
        ...(eachMessage
          ? {
              eachMessage: async (payload: EachMessagePayload) => {
                if (stopped) throw new Error('the consumer is stopping');
                emit(consumerEvents.FETCH_START, { nodeId: -1 });
                const work = eachMessage(payload);
                inFlight.add(work);
                try {
                  await work;
                } catch (error) {
                  emit(consumerEvents.CRASH, { error, groupId: config.groupId, restart: true });
                  throw error;
                } finally {
                  inFlight.delete(work);
                }
              },
            }
          : {
              eachBatch: async (payload: EachBatchPayload) => {
                if (!eachBatch) return;
                if (stopped) throw new Error('the consumer is stopping'); // not resolved: read again by whoever runs next
                const { batch } = payload;
                const started = Date.now();
                emit(consumerEvents.FETCH_START, { nodeId: -1 });
                const meta = {
                  topic: batch.topic,
                  partition: batch.partition,
                  highWatermark: batch.highWatermark,
                  offsetLag: batch.offsetLag(),
                  offsetLagLow: batch.offsetLagLow(),
                  batchSize: batch.messages.length,
                  firstOffset: batch.firstOffset(),
                  lastOffset: batch.lastOffset(),
                };
                emit(consumerEvents.FETCH, { numberOfBatches: 1, duration: 0, nodeId: -1 });
                emit(consumerEvents.START_BATCH_PROCESS, meta);
                const work = eachBatch({ ...payload, isRunning: () => !stopped && payload.isRunning() });
                inFlight.add(work);
                try {
                  await work;
                } catch (error) {
                  // As kafkajs: the batch is fetched again from its first unresolved offset (the library seeks back).
                  emit(consumerEvents.CRASH, { error, groupId: config.groupId, restart: true });
                  throw error;
                } finally {
                  inFlight.delete(work);
                }
                emit(consumerEvents.END_BATCH_PROCESS, { ...meta, duration: Date.now() - started });
              },
            }),
      }),
    );
  };

  const stop = async (): Promise<void> => {
    if (!consumer) return;
    stopped = true;
    if (ticker) clearInterval(ticker);
    ticker = undefined;
    const current = consumer.assignment();
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of current) byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
    if (byTopic.size > 0) {
      try {
        consumer.pause([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
      } catch {
        // Not running any more: nothing to pause.
      }
    }
    await Promise.allSettled([...inFlight]);
    emit(consumerEvents.STOP, {});
  };

  const self: KafkaConsumer = {
    connect: async () => {
      connected = true;
      emit(consumerEvents.CONNECT, {});
    },
    disconnect: async () => {
      if (ticker) clearInterval(ticker);
      ticker = undefined;
      stopped = true;
      const lib = consumer;
      connected = false;
      if (!lib) return;
      await Promise.allSettled([...inFlight]);
      await translated(() => lib.disconnect());
      consumer = undefined;
      assigned.clear();
      emit(consumerEvents.DISCONNECT, {});
    },
    subscribe: async (subscription: ConsumerSubscribeTopics | ConsumerSubscribeTopic) => {
      if (consumer) throw unsupported('subscribe() after run()', 'the library fixes the subscription in run()');
      const given = 'topics' in subscription ? subscription.topics : [subscription.topic];
      for (const topic of given)
        if (typeof topic !== 'string') throw unsupported('a topic pattern', 'subscribe to topic names');
      if (subscription.fromBeginning !== undefined) {
        if (fromBeginning !== undefined && fromBeginning !== subscription.fromBeginning)
          throw unsupported(
            'fromBeginning differing between topics of one consumer',
            "librdkafka's auto.offset.reset is per consumer",
          );
        fromBeginning = subscription.fromBeginning;
      }
      topics = [...new Set([...topics, ...(given as string[])])];
    },
    run,
    stop,
    pause: (topicsToPause) => {
      const list = topicsToPause.map(({ topic, partitions }) => ({
        topic,
        partitions: partitions ?? [...(assigned.get(topic) ?? [])],
      }));
      if (joining) joining.pauses.push(...list);
      else started('pause()').pause(list);
    },
    resume: (topicsToResume) =>
      started('resume()').resume(
        topicsToResume.map(({ topic, partitions }) => ({
          topic,
          partitions: partitions ?? [...(assigned.get(topic) ?? [])],
        })),
      ),
    seek: ({ topic, partition, offset }) => {
      if (joining && assigned.get(topic)?.has(partition)) joining.seeks.set(`${topic}:${partition}`, String(offset));
      else started('seek()').seek({ topic, partition, offset: String(offset) });
    },
    commitOffsets: (offsets) => translated(() => started('commitOffsets()').commitOffsets(offsets)),
    on: ((event: string, listener: (e: unknown) => void) => {
      emitter.on(event, listener);
      return () => emitter.off(event, listener);
    }) as KafkaConsumer['on'],
    events: consumerEvents,
  };
  return self;
}
