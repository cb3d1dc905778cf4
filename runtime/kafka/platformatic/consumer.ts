/**
 * The port's consumer on @platformatic/kafka. platformatic keeps the group membership (join, sync, heartbeats and
 * rejoins in the background); fetching and batch hand-out are ours, kafkajs-style: one batch per partition in flight,
 * in offset order, up to `partitionsConsumedConcurrently` partitions at once; positions move only by `resolveOffset`
 * and `seek`; a throwing `eachBatch` sends the partition back to its last resolved offset (CRASH, restart: true).
 */
import { Consumer, FetchIsolationLevels, kGetApi, kGetConnection, type Connection } from '@platformatic/kafka';
import type { ConsumerConfig, ConsumerRunConfig, EachBatchPayload, IHeaders, KafkaMessage } from 'kafkajs';
import { consumerEvents, type KafkaConsumer } from '../port.ts';
import {
  baseOptions,
  kafkajsError,
  logClientEvents,
  protocolErrorOf,
  unsupported,
  type ClientContext,
} from './common.ts';

const HONOURED = new Set([
  'groupId',
  'readUncommitted',
  'sessionTimeout',
  'heartbeatInterval',
  'rebalanceTimeout',
  'maxBytesPerPartition',
  'maxWaitTimeInMs',
  'maxBytes',
  'minBytes',
  'retry',
  'allowAutoTopicCreation',
]);

const IS_CONTROL = 0b10_0000;
const IS_TRANSACTIONAL = 0b1_0000;
const LOG_APPEND_TIME = 0b1000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const call = <T>(fn: (callback: (error: Error | null, result?: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result as T))));

type ApiFn = (...args: unknown[]) => void;
type Internal = Consumer & {
  [kGetApi](name: string, callback: (error: Error | null, api?: ApiFn) => void): void;
  [kGetConnection](
    broker: { host: string; port: number },
    callback: (error: Error | null, c?: Connection) => void,
  ): void;
};

interface RecordBatch {
  firstOffset: bigint;
  attributes: number;
  lastOffsetDelta: number;
  firstTimestamp: bigint;
  maxTimestamp: bigint;
  producerId: bigint;
  records: Array<{
    attributes: number;
    timestampDelta: bigint;
    offsetDelta: number;
    key: Buffer | null;
    value: Buffer | null;
    headers: Array<[Buffer | null, Buffer | null]>;
  }>;
}

interface FetchPartition {
  partitionIndex: number;
  errorCode: number;
  highWatermark: bigint;
  lastStableOffset: bigint;
  abortedTransactions: Array<{ producerId: bigint; firstOffset: bigint }>;
  records?: RecordBatch[];
}

interface FetchResponse {
  responses: Array<{ topicId: string; partitions: FetchPartition[] }>;
}

interface PartitionState {
  topic: string;
  partition: number;
  /** Next offset to fetch; undefined until the committed offset (or the seek) is known. */
  position: bigint | undefined;
  /** Bumped by every seek, revocation and re-assignment: a batch fetched under an older epoch moves no position. */
  epoch: number;
  /** Bumped by every seek: with a revocation, what makes a batch in flight stale (`isStale`), as in kafkajs. */
  seeks: number;
  busy: Promise<void> | undefined;
  revoked: boolean;
  highWatermark: bigint;
  /** Backoff after a failed eachBatch. */
  notBefore: number;
  failures: number;
}

type Listener = (event: { id: number; type: string; timestamp: number; payload: unknown }) => void;

/**
 * kafkajs' read_committed filtering (the Java client's): records of an aborted transaction are skipped from its
 * first offset until that producer's abort marker. platformatic's own filter keys aborted ranges by producer id and
 * so lets through all but the last of several aborted transactions of one producer in the same fetch response, and
 * lets through one whose marker is past the response; this one reads the ranges in offset order.
 */
function* committedRecords(partition: FetchPartition, readCommitted: boolean): Generator<[RecordBatch, bigint]> {
  const aborted = readCommitted
    ? [...partition.abortedTransactions].sort((a, b) => (a.firstOffset < b.firstOffset ? -1 : 1))
    : [];
  const abortedProducers = new Set<bigint>();
  for (const batch of partition.records ?? []) {
    while (aborted.length > 0 && aborted[0]!.firstOffset <= batch.firstOffset + BigInt(batch.lastOffsetDelta))
      abortedProducers.add(aborted.shift()!.producerId);
    if (batch.attributes & IS_CONTROL) {
      // Control record key: version (int16), type (int16): 0 abort, 1 commit.
      const key = batch.records[0]?.key;
      if (key && key.length >= 4 && key.readInt16BE(2) === 0) abortedProducers.delete(batch.producerId);
      continue;
    }
    if (readCommitted && batch.attributes & IS_TRANSACTIONAL && abortedProducers.has(batch.producerId)) continue;
    yield [batch, batch.firstOffset];
  }
}

function toKafkaMessage(batch: RecordBatch, record: RecordBatch['records'][number]): KafkaMessage {
  const headers: IHeaders = {};
  for (const [k, v] of record.headers) {
    if (k === null) continue;
    const name = k.toString();
    const value = v ?? Buffer.alloc(0);
    const prev = headers[name];
    headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev as Buffer, value];
  }
  const timestamp =
    batch.attributes & LOG_APPEND_TIME ? batch.maxTimestamp : batch.firstTimestamp + record.timestampDelta;
  return {
    key: record.key,
    value: record.value,
    timestamp: String(timestamp),
    attributes: record.attributes,
    offset: String(batch.firstOffset + BigInt(record.offsetDelta)),
    headers,
  } as unknown as KafkaMessage;
}

export function platformaticConsumer(context: ClientContext, config: ConsumerConfig): KafkaConsumer {
  for (const [name, value] of Object.entries(config))
    if (value !== undefined && !HONOURED.has(name))
      throw unsupported(`consumer option ${name}`, 'the adapter does not map it to @platformatic/kafka');
  const readCommitted = config.readUncommitted !== true;
  const maxWaitTime = config.maxWaitTimeInMs ?? 5000;
  const maxBytesPerPartition = config.maxBytesPerPartition ?? 1_048_576;
  const consumer = new Consumer({
    ...baseOptions(context, config.retry),
    groupId: config.groupId,
    sessionTimeout: config.sessionTimeout ?? 30_000,
    heartbeatInterval: config.heartbeatInterval ?? 3_000,
    rebalanceTimeout: config.rebalanceTimeout ?? 60_000,
    autocreateTopics: config.allowAutoTopicCreation ?? true,
  });
  logClientEvents(consumer, consumer.clientId, context.options.logLevel === 0);
  const internal = consumer as Internal;

  const listeners = new Map<string, Set<Listener>>();
  let eventId = 0;
  const emit = (type: string, payload: unknown): void => {
    const event = { id: eventId++, type, timestamp: Date.now(), payload };
    for (const listener of listeners.get(type) ?? []) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  };

  const subscriptions = new Map<string, boolean>();
  const partitions = new Map<string, PartitionState>();
  const paused = new Map<string, Set<number> | 'all'>();
  const seeks = new Map<string, bigint>();
  let running = false;
  let loop: Promise<void> | undefined;
  let wake: (() => void) | undefined;
  const nudge = (): void => {
    wake?.();
  };
  let joinEpoch = 0;

  const keyOf = (topic: string, partition: number): string => `${topic}:${partition}`;
  const isPaused = (topic: string, partition: number): boolean => {
    const p = paused.get(topic);
    return p === 'all' || (p !== undefined && p.has(partition));
  };

  /** Offsets to start from: the seek if any, else the committed one, else the earliest or latest by `fromBeginning`. */
  const resolvePositions = async (states: PartitionState[], epoch: number): Promise<void> => {
    const byTopic = new Map<string, PartitionState[]>();
    for (const s of states) byTopic.set(s.topic, [...(byTopic.get(s.topic) ?? []), s]);
    const committed = await consumer.listCommittedOffsets({
      topics: [...byTopic].map(([topic, ss]) => ({ topic, partitions: ss.map((s) => s.partition) })),
    });
    const missing = new Map<string, number[]>();
    for (const s of states) {
      const c = committed.get(s.topic)?.[s.partition];
      if (c !== undefined && c >= 0n) {
        if (epoch === joinEpoch && s.position === undefined) s.position = c;
      } else missing.set(s.topic, [...(missing.get(s.topic) ?? []), s.partition]);
    }
    for (const [topic, ps] of missing) {
      const fromBeginning = subscriptions.get(topic) ?? false;
      const offsets = await consumer.listOffsets({
        topics: [topic],
        partitions: { [topic]: ps },
        timestamp: fromBeginning ? -2n : -1n,
        isolationLevel: readCommitted ? FetchIsolationLevels.READ_COMMITTED : FetchIsolationLevels.READ_UNCOMMITTED,
      });
      for (const p of ps) {
        const s = partitions.get(keyOf(topic, p));
        const o = offsets.get(topic)?.[p];
        if (s && o !== undefined && epoch === joinEpoch && s.position === undefined) s.position = o;
      }
    }
    nudge();
  };

  const onJoin = (payload: {
    memberId: string;
    generationId?: number;
    isLeader?: boolean;
    assignments?: Array<{ topic: string; partitions: number[] }>;
  }): void => {
    const epoch = ++joinEpoch;
    const assigned = new Set<string>();
    const memberAssignment: Record<string, number[]> = {};
    for (const { topic, partitions: ps } of payload.assignments ?? []) {
      memberAssignment[topic] = [...ps].sort((a, b) => a - b);
      for (const p of ps) assigned.add(keyOf(topic, p));
    }
    for (const [key, state] of partitions)
      if (!assigned.has(key)) {
        state.revoked = true;
        state.epoch += 1;
        partitions.delete(key);
      }
    const fresh: PartitionState[] = [];
    for (const key of assigned) {
      const at = key.lastIndexOf(':');
      const topic = key.slice(0, at);
      const partition = Number(key.slice(at + 1));
      const previous = partitions.get(key);
      const state: PartitionState = previous ?? {
        topic,
        partition,
        position: undefined,
        epoch: 0,
        seeks: 0,
        busy: undefined,
        revoked: false,
        highWatermark: -1n,
        notBefore: 0,
        failures: 0,
      };
      // Like kafkajs after a rejoin: every assigned partition starts again from its committed offset.
      state.epoch += 1;
      state.position = undefined;
      partitions.set(key, state);
      fresh.push(state);
    }
    emit(consumerEvents.GROUP_JOIN, {
      duration: 0,
      groupId: config.groupId,
      isLeader: payload.isLeader ?? false,
      leaderId: payload.isLeader ? payload.memberId : '',
      groupProtocol: 'RoundRobinAssigner',
      memberId: payload.memberId,
      memberAssignment,
    });
    // Seeks asked for in the handler (or before) win; the rest wait for the partition's batch in flight to finish.
    for (const state of fresh) {
      const seek = seeks.get(keyOf(state.topic, state.partition));
      if (seek !== undefined) {
        state.position = seek;
        seeks.delete(keyOf(state.topic, state.partition));
      }
    }
    const pending = fresh.filter((s) => s.position === undefined);
    void (async () => {
      await Promise.all(pending.map((s) => s.busy));
      for (let attempt = 0; running && epoch === joinEpoch; attempt++) {
        try {
          await resolvePositions(pending, epoch);
          return;
        } catch (error) {
          emit(consumerEvents.CRASH, { error: kafkajsError(error), groupId: config.groupId, restart: true });
          await sleep(Math.min(200 * 2 ** attempt, 5000));
        }
      }
    })();
    nudge();
  };
  consumer.on('consumer:group:join', onJoin as never);
  // A rejoin that failed for good (platformatic's retries spent): say so, as kafkajs' crash with restart does, and
  // join again while running.
  consumer.on('error', ((error: Error) => {
    emit(consumerEvents.CRASH, { error: kafkajsError(error), groupId: config.groupId, restart: true });
    if (running)
      setTimeout(() => {
        if (running) consumer.joinGroup({}).catch(() => undefined);
      }, 1000).unref();
  }) as never);
  consumer.on('consumer:group:rebalance', (() =>
    emit(consumerEvents.REBALANCING, { groupId: config.groupId, memberId: consumer.memberId })) as never);

  let runConfig: ConsumerRunConfig;
  let slots = 1;
  const waiting: Array<() => void> = [];
  const acquire = async (): Promise<void> => {
    if (slots > 0) {
      slots -= 1;
      return;
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  };
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else slots += 1;
  };

  const commitPosition = async (state: PartitionState, offset: bigint): Promise<void> => {
    try {
      await consumer.commit({
        offsets: [{ topic: state.topic, partition: state.partition, offset, leaderEpoch: -1 }],
      });
      emit(consumerEvents.COMMIT_OFFSETS, {
        groupId: config.groupId,
        topics: [{ topic: state.topic, partitions: [{ partition: String(state.partition), offset: String(offset) }] }],
      });
    } catch (error) {
      // Not fatal: the next batch commits a later offset; a rejoin starts from the last one committed.
      emit(consumerEvents.CRASH, { error: kafkajsError(error), groupId: config.groupId, restart: true });
    }
  };

  const handBatch = async (state: PartitionState, epoch: number, partition: FetchPartition): Promise<void> => {
    const fetchedFrom = state.position!;
    const messages: KafkaMessage[] = [];
    let lastOffset = fetchedFrom - 1n;
    for (const [batch] of committedRecords(partition, readCommitted)) {
      for (const record of batch.records) {
        const offset = batch.firstOffset + BigInt(record.offsetDelta);
        if (offset >= fetchedFrom) messages.push(toKafkaMessage(batch, record));
      }
    }
    for (const batch of partition.records ?? []) {
      const end = batch.firstOffset + BigInt(batch.lastOffsetDelta);
      if (end > lastOffset) lastOffset = end;
    }
    state.highWatermark = readCommitted ? partition.lastStableOffset : partition.highWatermark;
    if (lastOffset < fetchedFrom) return;
    const { topic, partition: index } = state;
    const highWatermark = String(state.highWatermark);
    const lastOf = lastOffset;
    // A partition kept through a rebalance is not stale: its batch may commit; the position is re-read after it.
    const seeksAtStart = state.seeks;
    const stale = (): boolean => state.revoked || state.seeks !== seeksAtStart || !running;
    const current = (): boolean => !stale() && state.epoch === epoch;
    let resolved: bigint | undefined;
    const batchInfo = {
      topic,
      partition: index,
      highWatermark,
      messages,
      isEmpty: () => messages.length === 0,
      firstOffset: () => (messages.length > 0 ? messages[0]!.offset : null),
      lastOffset: () => String(lastOf),
      offsetLag: () => String(state.highWatermark - 1n - lastOf < 0n ? 0n : state.highWatermark - 1n - lastOf),
      offsetLagLow: () =>
        String(state.highWatermark - 1n - fetchedFrom < 0n ? 0n : state.highWatermark - 1n - fetchedFrom),
    };
    const eventPayload = (): Record<string, unknown> => ({
      topic,
      partition: index,
      highWatermark,
      offsetLag: batchInfo.offsetLag(),
      offsetLagLow: batchInfo.offsetLagLow(),
      batchSize: messages.length,
      firstOffset: batchInfo.firstOffset(),
      lastOffset: batchInfo.lastOffset(),
    });
    const started = Date.now();
    emit(consumerEvents.START_BATCH_PROCESS, eventPayload());
    if (messages.length === 0) {
      // Transaction markers and aborted records only: nothing for the handler, the position moves past them.
      if (current()) state.position = lastOf + 1n;
      emit(consumerEvents.END_BATCH_PROCESS, { ...eventPayload(), duration: Date.now() - started });
      return;
    }
    const payload = {
      batch: batchInfo,
      resolveOffset: (offset: string) => {
        const next = BigInt(offset) + 1n;
        if (current() && (resolved === undefined || next > resolved)) {
          resolved = next;
          state.position = next;
        }
      },
      heartbeat: async () => {
        // platformatic heartbeats on its own timer, whatever the handler does.
      },
      commitOffsetsIfNecessary: async () => {},
      uncommittedOffsets: () => ({ topics: [] }),
      isRunning: () => running,
      isStale: stale,
      pause: () => {
        const p = paused.get(topic);
        if (p !== 'all') paused.set(topic, new Set([...(p ?? []), index]));
        return () => {
          (paused.get(topic) as Set<number> | undefined)?.delete?.(index);
          nudge();
        };
      },
    } as unknown as EachBatchPayload;
    try {
      if (runConfig.eachBatch) {
        await runConfig.eachBatch(payload);
        if (runConfig.eachBatchAutoResolve !== false) payload.resolveOffset(batchInfo.lastOffset());
      } else {
        // eachMessage: one at a time, each resolved once handled (a throw re-delivers from the one that failed).
        for (const message of messages) {
          if (!running || stale()) break;
          await runConfig.eachMessage!({
            topic,
            partition: index,
            message,
            heartbeat: payload.heartbeat,
            pause: payload.pause,
          });
          payload.resolveOffset(message.offset);
        }
      }
      state.failures = 0;
      emit(consumerEvents.END_BATCH_PROCESS, { ...eventPayload(), duration: Date.now() - started });
      // autoCommit (kafkajs' default): the resolved position is committed after each batch.
      if (runConfig.autoCommit !== false && resolved !== undefined && current()) await commitPosition(state, resolved);
    } catch (error) {
      // Like kafkajs: nothing past the last resolved offset is lost; the partition is fetched again from there.
      state.failures += 1;
      state.notBefore = Date.now() + Math.min(100 * 2 ** Math.min(state.failures - 1, 6), 5000);
      emit(consumerEvents.CRASH, { error, groupId: config.groupId, restart: true });
    }
  };

  const fetchFrom = async (
    leader: number,
    broker: { host: string; port: number },
    states: PartitionState[],
    topicIds: Map<string, string>,
  ): Promise<void> => {
    const epochs = new Map(states.map((s) => [s, s.epoch]));
    const requested = new Map(states.map((s) => [s, s.position!]));
    const byTopic = new Map<string, PartitionState[]>();
    for (const s of states) byTopic.set(s.topic, [...(byTopic.get(s.topic) ?? []), s]);
    const topics = [...byTopic].map(([topic, ss]) => ({
      topicId: topicIds.get(topic)!,
      partitions: ss.map((s) => ({
        partition: s.partition,
        fetchOffset: s.position!,
        partitionMaxBytes: maxBytesPerPartition,
        currentLeaderEpoch: -1,
        lastFetchedEpoch: -1,
      })),
    }));
    const connection = await call<Connection>((cb) => internal[kGetConnection](broker, cb));
    const fetchApi = await call<ApiFn>((cb) => internal[kGetApi]('Fetch', cb));
    const started = Date.now();
    let response: FetchResponse;
    try {
      response = await call<FetchResponse>((cb) =>
        fetchApi(
          connection,
          maxWaitTime,
          config.minBytes ?? 1,
          config.maxBytes ?? 10_485_760,
          readCommitted ? FetchIsolationLevels.READ_COMMITTED : FetchIsolationLevels.READ_UNCOMMITTED,
          0,
          -1,
          topics,
          [],
          '',
          cb,
        ),
      );
    } catch (error) {
      const protocol = protocolErrorOf(error);
      if (protocol?.apiId === 'OFFSET_OUT_OF_RANGE') {
        // Reset every partition of this request to its earliest or latest offset, like kafkajs' fromBeginning.
        for (const s of states) if (s.epoch === epochs.get(s)) s.position = undefined;
        await resolveOutOfRange(states);
        return;
      }
      consumer.clearMetadata();
      throw error;
    }
    const names = new Map([...topicIds].map(([name, id]) => [id, name]));
    let numberOfBatches = 0;
    const work: Array<Promise<void>> = [];
    for (const topicResponse of response.responses) {
      const topic = names.get(topicResponse.topicId);
      if (topic === undefined) continue;
      for (const p of topicResponse.partitions) {
        const state = partitions.get(keyOf(topic, p.partitionIndex));
        if (!state || state.epoch !== epochs.get(state) || state.position !== requested.get(state)) continue;
        if ((p.records ?? []).length === 0) {
          state.highWatermark = readCommitted ? p.lastStableOffset : p.highWatermark;
          continue;
        }
        numberOfBatches += 1;
        const epoch = state.epoch;
        const job = (async () => {
          await acquire();
          try {
            if (state.epoch === epoch && running) await handBatch(state, epoch, p);
          } finally {
            release();
          }
        })();
        state.busy = job.finally(() => {
          if (state.busy === tracked) state.busy = undefined;
          nudge();
        });
        const tracked = state.busy;
        work.push(tracked);
      }
    }
    emit(consumerEvents.FETCH, { numberOfBatches, duration: Date.now() - started, nodeId: String(leader) });
  };

  const resolveOutOfRange = async (states: PartitionState[]): Promise<void> => {
    for (const s of states) {
      const fromBeginning = subscriptions.get(s.topic) ?? false;
      const offsets = await consumer.listOffsets({
        topics: [s.topic],
        partitions: { [s.topic]: [s.partition] },
        timestamp: fromBeginning ? -2n : -1n,
      });
      if (s.position === undefined) s.position = offsets.get(s.topic)?.[s.partition] ?? 0n;
    }
  };

  const fetchLoop = async (): Promise<void> => {
    let failures = 0;
    while (running) {
      const now = Date.now();
      const ready = [...partitions.values()].filter(
        (s) =>
          s.position !== undefined && !s.busy && !s.revoked && !isPaused(s.topic, s.partition) && s.notBefore <= now,
      );
      if (ready.length === 0) {
        const soonest = Math.min(
          ...[...partitions.values()].filter((s) => s.notBefore > now).map((s) => s.notBefore - now),
          maxWaitTime,
        );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, soonest);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
        continue;
      }
      emit(consumerEvents.FETCH_START, {});
      try {
        const metadata = await consumer.metadata({ topics: [...new Set(ready.map((s) => s.topic))] });
        const byLeader = new Map<number, PartitionState[]>();
        const topicIds = new Map<string, string>();
        for (const s of ready) {
          const topic = metadata.topics.get(s.topic)!;
          topicIds.set(s.topic, topic.id);
          const leader = topic.partitions[s.partition]!.leader;
          byLeader.set(leader, [...(byLeader.get(leader) ?? []), s]);
        }
        await Promise.all(
          [...byLeader].map(([leader, states]) => fetchFrom(leader, metadata.brokers.get(leader)!, states, topicIds)),
        );
        failures = 0;
      } catch (error) {
        failures += 1;
        consumer.clearMetadata();
        if (failures % 10 === 1)
          emit(consumerEvents.CRASH, { error: kafkajsError(error), groupId: config.groupId, restart: true });
        await sleep(Math.min(100 * 2 ** Math.min(failures, 6), 5000));
      }
    }
  };

  const self = {
    events: consumerEvents,
    on: (type: string, listener: Listener) => {
      const set = listeners.get(type) ?? new Set();
      set.add(listener);
      listeners.set(type, set);
      return () => set.delete(listener);
    },
    connect: async () => {
      try {
        await consumer.metadata({ topics: [] });
      } catch (error) {
        throw kafkajsError(error);
      }
      emit(consumerEvents.CONNECT, {});
    },
    subscribe: async (subscription: {
      topic?: string | RegExp;
      topics?: Array<string | RegExp>;
      fromBeginning?: boolean;
    }) => {
      const topics = subscription.topics ?? (subscription.topic !== undefined ? [subscription.topic] : []);
      for (const topic of topics) {
        if (typeof topic !== 'string')
          throw unsupported('subscribe with a RegExp topic', 'platformatic subscribes by name');
        subscriptions.set(topic, subscription.fromBeginning ?? false);
      }
    },
    run: async (run: ConsumerRunConfig = {}) => {
      if (!run.eachBatch && !run.eachMessage) throw new Error('Consumer run needs eachBatch or eachMessage');
      if (run.autoCommit !== false && (run.autoCommitInterval != null || run.autoCommitThreshold != null))
        throw unsupported(
          'run({ autoCommitInterval, autoCommitThreshold })',
          'the adapter auto-commits after every batch, as kafkajs does without them',
        );
      runConfig = run;
      slots = Math.max(1, run.partitionsConsumedConcurrently ?? 1);
      running = true;
      for (const topic of subscriptions.keys()) consumer.topics.track(topic);
      try {
        await consumer.joinGroup({});
      } catch (error) {
        running = false;
        throw kafkajsError(error);
      }
      loop = fetchLoop();
    },
    stop: async () => {
      running = false;
      nudge();
      await loop;
      await Promise.all([...partitions.values()].map((s) => s.busy));
      emit(consumerEvents.STOP, {});
    },
    disconnect: async () => {
      await self.stop();
      try {
        if (consumer.memberId) await consumer.leaveGroup(true);
      } catch {
        // Leaving is a courtesy: the session timeout removes the member anyway.
      }
      await consumer.close().catch(() => undefined);
      emit(consumerEvents.DISCONNECT, {});
    },
    pause: (topics: Array<{ topic: string; partitions?: number[] }>) => {
      for (const { topic, partitions: ps } of topics) {
        if (!ps) paused.set(topic, 'all');
        else {
          const p = paused.get(topic);
          if (p !== 'all') paused.set(topic, new Set([...(p ?? []), ...ps]));
        }
      }
    },
    resume: (topics: Array<{ topic: string; partitions?: number[] }>) => {
      for (const { topic, partitions: ps } of topics) {
        if (!ps) paused.delete(topic);
        else {
          const p = paused.get(topic);
          if (p === 'all') {
            const all = [...partitions.values()].filter((s) => s.topic === topic).map((s) => s.partition);
            paused.set(topic, new Set(all.filter((x) => !ps.includes(x))));
          } else for (const x of ps) p?.delete(x);
        }
      }
      nudge();
    },
    seek: ({ topic, partition, offset }: { topic: string; partition: number; offset: string }) => {
      const state = partitions.get(keyOf(topic, partition));
      if (!state) {
        seeks.set(keyOf(topic, partition), BigInt(offset));
        return;
      }
      state.epoch += 1;
      state.seeks += 1;
      state.position = BigInt(offset);
      state.notBefore = 0;
      nudge();
    },
    commitOffsets: async (offsets: Array<{ topic: string; partition: number; offset: string }>) => {
      try {
        await consumer.commit({
          offsets: offsets.map(({ topic, partition, offset }) => ({
            topic,
            partition,
            offset: BigInt(offset),
            leaderEpoch: -1,
          })),
        });
      } catch (error) {
        throw kafkajsError(error);
      }
      emit(consumerEvents.COMMIT_OFFSETS, { groupId: config.groupId, topics: offsets });
    },
  };
  return self as unknown as KafkaConsumer;
}
