/**
 * Runs one processor of a topology as a consumer-group member: the Kafka side of exactly-once.
 *
 * Per input partition a task owns a transactional producer whose id is derived from the group and the partition,
 * so a new owner's `initTransactions` fences any zombie. Each batch is one transaction: outputs, dead letters,
 * late records, the state changes (to the changelog) and the consumed offsets — whose metadata records the
 * changelog offset the batch ended at. Only after the commit are the changes applied to Redis, fenced by that
 * changelog offset. See docs/exactly-once.md for the failure cases.
 */
import { randomUUID } from 'node:crypto';
import { type Admin, type Consumer, type EachBatchPayload, type Producer, type Transaction } from 'kafkajs';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import { AgentStreamsError, ErrorCode, isAgentStreamsError } from '../errors.ts';
import { retry, withRetry } from '../retry.ts';
import type { createMetrics } from '../observability/metrics.ts';
import { AvroSerde, registryClient } from '../serde/avro.ts';
import { readerSchemasOf } from '../serde/readers.ts';
import { processorSpec, tablesOfSpec, type ProcessorSpec, type Topology } from '../topology/topology.ts';
import { prepareBatch, runBatch, runPunctuation, type BatchResult, type Codec, type StateEntry, type TaskScope } from './batch.ts';
import { deadLetterLogFields, type ProducedMessage, type SourceRecord } from './dead-letter.ts';
import { RedisTaskStore } from '../state/redis-store.ts';
import { assertChangelogIntact, changelogMessages, changelogRegressed, readChangelogRange, STREAM_TIME_KEY } from '../state/changelog.ts';
import { ensureTopics } from './topics.ts';
import { consumerHealth, watchConsumerHealth } from './consumer-health.ts';
import { readTables } from '../state/tables.ts';
import { kafkaClient } from '../kafka/client.ts';
import { sendChunks } from '../kafka/send-chunks.ts';
import { startLagMonitor } from '../observability/lag.ts';
import { BatchTrace, tracingActive, type Context } from '../observability/tracing.ts';

export interface RunProcessorOptions {
  config: Config;
  topology: Topology;
  processor: string;
  metrics?: ReturnType<typeof createMetrics>;
  log?: (event: string, fields?: Record<string, unknown>) => void;
  /** Partitions processed in parallel by this member. */
  concurrency?: number;
  /** Retention of state keys in Redis (refreshed on every write). */
  stateTtlMs?: number;
  /** How often shared tables are re-read from Redis. */
  tableRefreshMs?: number;
  /** Enrichment services by name (see `enrich` on a processor): the batch's requests in, answers out. */
  services?: Record<string, EnrichmentService>;
  /** The wall clock punctuation closes windows by (default `Date.now`, shifted by `config.clock.offsetMs`). */
  clock?: () => number;
  /** Liveness fails when no batch completed for this long while the last fetch showed lag (default 2 min). */
  stallMs?: number;
  /** This member's id in logs and commit metadata (default: a random one); the process's logger carries the same. */
  instanceId?: string;
  /** Liveness fails when a transaction (or a producer's initialisation) has not returned for this long (default `config.health.producerStuckMs`). */
  producerStuckMs?: number;
}

/**
 * Answers a batch's enrichment requests (keyed by record offset). It should answer every request, falling back
 * where it must; a throw is taken as an outage and the batch waits and retries.
 */
export type EnrichmentService = (requests: ReadonlyMap<string, unknown>, trace?: EnrichmentTrace) => Promise<Map<string, unknown>>;

/** While tracing: the trace context of each request's record (by offset), so the service's spans join its trace. */
export type EnrichmentTrace = (offset: string) => Context;

/** Runs `work`, heartbeating every second until it settles, so that a long wait inside a batch keeps the group membership. */
async function keepingAlive<T>(heartbeat: () => Promise<void>, work: () => Promise<T>): Promise<T> {
  const timer = setInterval(() => void heartbeat().catch(() => undefined), 1_000);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/** What /healthz and /readyz report for a member: the truth about its consumer and its partitions. */
export interface MemberHealth {
  /** Liveness: false once the consumer crashed for good, commits keep failing, a transaction is stuck past `producerStuckMs`, or no batch completed for `stallMs` while records wait. */
  live: boolean;
  /** Readiness: joined, and neither rebalancing nor restoring state. */
  ready: boolean;
  /** Why, in words (each failing check). */
  problems: string[];
}

export interface ProcessorHandle {
  /** The member's health now (see MemberHealth). */
  health(): MemberHealth;
  readonly instanceId: string;
  /** Finishes the batch in flight, commits, leaves the group. Idempotent. */
  stop(): Promise<void>;
  /** Resolves once the member has joined the group and has an assignment (possibly empty). */
  readonly joined: Promise<void>;
  /** Numbers since start, for tests and the CLI. */
  readonly stats: { batches: number; records: number; deadLettered: number; late: number; amended: number; recoveries: number; replayedChangelog: number };
}

interface Task {
  partition: number;
  producer: Producer;
  store?: RedisTaskStore;
  streamTime: number;
  /** Last changelog offset this task committed (and applied). */
  changelog: number;
  /** Next input offset per input topic, once committed by this task. */
  nextOffset: Map<string, string>;
  /** Committed offset per input topic when the task started: records below it are already processed. */
  startOffset: Map<string, string>;
  queue: Promise<unknown>;
  ready: Promise<void>;
}

const fencedErrors = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING', 'TRANSACTIONAL_ID_NOT_FOUND']);

function isFenced(error: unknown): boolean {
  const type = (error as { type?: string }).type;
  return type !== undefined && fencedErrors.has(type);
}

/** The changelog offset a commit recorded in its offset metadata; offsets committed by other tools have none. */
function changelogEndOf(metadata: string | null): number | undefined {
  if (!metadata) return undefined;
  try {
    const c = (JSON.parse(metadata) as { c?: unknown }).c;
    return typeof c === 'number' ? c : undefined;
  } catch {
    return undefined;
  }
}


/** Recovery retries everything but a lost changelog, which no retry can bring back. */
function unlessStateLost(error: unknown): boolean {
  return !isAgentStreamsError(error, ErrorCode.STATE_LOST);
}

function groupMessages(messages: ProducedMessage[]): Array<{ topic: string; messages: Array<Omit<ProducedMessage, 'topic'>> }> {
  const byTopic = new Map<string, Array<Omit<ProducedMessage, 'topic'>>>();
  for (const { topic, ...message } of messages) {
    let list = byTopic.get(topic);
    if (!list) byTopic.set(topic, (list = []));
    list.push(message);
  }
  return [...byTopic].map(([topic, list]) => ({ topic, messages: list }));
}

export async function runProcessor(options: RunProcessorOptions): Promise<ProcessorHandle> {
  const { config, topology, processor } = options;
  const spec: ProcessorSpec = processorSpec(topology, processor);
  const log = options.log ?? (() => {});
  const clock = options.clock ?? ((offset: number) => () => Date.now() + offset)(config.clock.offsetMs);
  const eventTimeBound = { maxAheadMs: config.records.maxEventTimeAheadMs, wallClock: clock };
  const instanceId = options.instanceId ?? randomUUID().slice(0, 8);
  const groupId = topology.groupId(processor);
  const stores = topology.storesOf(processor);
  const changelogTopic = topology.changelogTopic(processor);
  const stats = { batches: 0, records: 0, deadLettered: 0, late: 0, amended: 0, recoveries: 0, replayedChangelog: 0 };
  const kafka = kafkaClient(config, `${processor}-${instanceId}`);

  const admin: Admin = kafka.admin();
  await admin.connect();
  const inputPartitions = await ensureTopics(admin, topology, processor);

  const registry = registryClient(config);
  const serde = new AvroSerde(registry);
  for (const types of Object.values(spec.outputs ?? {})) for (const type of types) await serde.writerFor(type);
  const readers = readerSchemasOf(processor, spec.readerSchemas);
  const codec: Codec = {
    decode: (buffer) => serde.decodeResolved(buffer, readers),
    recordTypeOf: (buffer) => serde.recordTypeOf(buffer),
    encode: (type, value) => serde.encode(type, value),
  };

  const tableNames = tablesOfSpec(spec);
  const enrichment = spec.kind === 'process' && spec.enrich ? options.services?.[spec.enrich.service] : undefined;
  if (spec.kind === 'process' && spec.enrich && !enrichment) {
    throw new AgentStreamsError(ErrorCode.TOPOLOGY_INVALID, `Processor "${processor}" enriches through service "${spec.enrich.service}", which this process was not given.`);
  }
  const redis = stores.length > 0 || tableNames.length > 0 ? new Redis(config.redis.url, { lazyConnect: true, maxRetriesPerRequest: 2 }) : undefined;
  redis?.on('error', (error: Error) => log('redis.error', { message: error.message }));
  await redis?.connect();
  const transient = retry({ initialMs: 100, maxMs: 5_000 });
  let tables: Map<string, Map<string, unknown>> = redis ? await withRetry(() => readTables(redis, topology, tableNames, kafka), transient, { isRetriable: () => true }) : new Map();
  const refreshTables = async (): Promise<void> => {
    if (!redis || tableNames.length === 0) return;
    tables = await readTables(redis, topology, tableNames, kafka).catch((error: Error) => {
      log('tables.refresh-failed', { message: error.message });
      return tables;
    });
  };

  const tasks = new Map<number, Promise<Task>>();
  /**
   * The next offset this member's own transactions committed, per partition and topic. After a broker restart the
   * consumer's fetched positions (and a new task's committed offsets) can predate the markers of transactions whose
   * commit was acknowledged: the markers are written after the acknowledgement, and offsets of a pending transaction
   * are not returned (kafkajs cannot ask with KIP-447's requireStable). Records below what we committed ourselves are
   * skipped, never processed twice.
   */
  const committedByUs = new Map<number, Map<string, string>>();
  const rememberCommit = (partition: number, topic: string, offset: string): void => {
    let byTopic = committedByUs.get(partition);
    if (!byTopic) committedByUs.set(partition, (byTopic = new Map()));
    if (Number(offset) > Number(byTopic.get(topic) ?? -1)) byTopic.set(topic, offset);
  };

  /**
   * Committed offsets of the task's partition. Read after this task's producer has been initialised, they are
   * stable: initialising a transactional id completes or aborts the previous owner's open transaction first.
   * (The offsets the consumer fetched when it joined may predate that transaction's markers.)
   */
  async function committedOffsets(partition: number): Promise<Array<{ topic: string; offset: string; metadata: string | null }>> {
    const committed = await admin.fetchOffsets({ groupId, topics: spec.inputs });
    return committed.flatMap(({ topic, partitions }) =>
      partitions.filter((p) => p.partition === partition).map((p) => ({ topic, offset: p.offset, metadata: p.metadata })),
    );
  }

  // Health: what /healthz and /readyz tell the platform (kubelet, load balancer) about this member.
  const health = { ...consumerHealth(), recovering: 0, commitFailures: 0 };
  const stallMs = options.stallMs ?? 120_000;
  // Transactional producer work in flight, by start time: a broker that stopped answering (frozen, partitioned away)
  // leaves a call hanging through kafkajs' retries for minutes; past the bound the member is not live.
  const producerStuckMs = options.producerStuckMs ?? config.health.producerStuckMs;
  const producerWork = new Map<symbol, { partition: number; what: string; since: number }>();
  async function timedProducerWork<T>(partition: number, what: string, work: () => Promise<T>): Promise<T> {
    const id = Symbol(what);
    producerWork.set(id, { partition, what, since: Date.now() });
    try {
      return await work();
    } finally {
      producerWork.delete(id);
    }
  }

  async function recover(task: Task, reason: string): Promise<void> {
    const store = task.store!;
    let target = -1;
    for (const { metadata } of await committedOffsets(task.partition)) {
      const c = changelogEndOf(metadata);
      if (c !== undefined && c > target) target = c;
    }
    const { checkpoint } = await store.read([]);
    // A recreated changelog topic would otherwise freeze the state (every apply fenced as a replay): fail loudly.
    await assertChangelogIntact(kafka, changelogTopic, task.partition, { checkpoint: checkpoint?.changelog ?? -1, committed: target });
    const from = checkpoint ? checkpoint.changelog + 1 : 0;
    task.changelog = Math.max(checkpoint?.changelog ?? -1, target);
    task.streamTime = checkpoint?.streamTime ?? Number.NEGATIVE_INFINITY;
    if (target < from) return;
    // Only the range Redis has not applied is read: the uncommitted tail after a crash, or everything after a
    // Redis loss. Each chunk is applied with its last offset as the fence.
    stats.recoveries += 1;
    health.recovering += 1;
    log('state.recover', { partition: task.partition, reason, from, to: target });
    try {
      const replayed = await readChangelogRange(kafka, changelogTopic, task.partition, from, target, async (records) => {
        const changes = new Map<string, StateEntry | null>();
        let streamTime = task.streamTime;
        for (const r of records) {
          if (r.key === STREAM_TIME_KEY) streamTime = r.streamTime ?? streamTime;
          else changes.set(r.key, r.entry);
        }
        await store.apply([...changes].map(([key, entry]) => ({ key, entry })), records[records.length - 1]!.offset, streamTime, checkpoint?.offset ?? '0');
        task.streamTime = streamTime;
      });
      stats.replayedChangelog += replayed;
    } finally {
      health.recovering -= 1;
    }
  }

  async function createTask(partition: number): Promise<Task> {
    const producer = kafka.producer({
      transactionalId: `${groupId}-${partition}`,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      retry: { initialRetryTime: 30, retries: 10 },
    });
    const task: Task = {
      partition,
      producer,
      ...(redis && stores.length > 0 ? { store: new RedisTaskStore(redis, groupId, partition, options.stateTtlMs ?? 7 * 24 * 3600_000, options.metrics) } : {}),
      streamTime: Number.NEGATIVE_INFINITY,
      changelog: -1,
      nextOffset: new Map(),
      startOffset: new Map(),
      queue: Promise.resolve(),
      ready: Promise.resolve(),
    };
    task.ready = (async () => {
      await timedProducerWork(partition, 'initialising', async () => {
        await producer.connect();
        // The first transaction call initialises the producer id: that is what fences a previous owner.
        const init = await producer.transaction();
        await init.abort();
      });
      for (const c of await committedOffsets(partition)) if (Number(c.offset) >= 0) task.startOffset.set(c.topic, c.offset);
      for (const [topic, offset] of committedByUs.get(partition) ?? []) {
        if (Number(offset) > Number(task.startOffset.get(topic) ?? -1)) task.startOffset.set(topic, offset);
      }
      // Punctuation commits at these offsets until a batch moves them: windows of a partition that gets no new
      // record after a restart still close by the wall clock.
      for (const [topic, offset] of task.startOffset) task.nextOffset.set(topic, offset);
      if (task.store) await withRetry(() => recover(task, 'assigned'), transient, { isRetriable: unlessStateLost, onRetry: (e) => log('state.retry', { partition, message: (e as Error).message }) });
    })();
    return task;
  }

  function taskFor(partition: number): Promise<Task> {
    let task = tasks.get(partition);
    if (!task) {
      task = createTask(partition).then(async (t) => {
        await t.ready;
        return t;
      });
      tasks.set(partition, task);
      // A failed start (e.g. Redis down during recovery) is retried by the next batch.
      task.catch(() => tasks.delete(partition));
    }
    return task;
  }

  async function dropTask(partition: number): Promise<void> {
    const pending = tasks.get(partition);
    if (!pending) return;
    tasks.delete(partition);
    const task = await pending.catch(() => undefined);
    if (!task) return;
    await task.queue.catch(() => undefined);
    await task.producer.disconnect().catch(() => undefined);
  }

  /** Runs `work` after every earlier job of the task: batches of several inputs and punctuation never overlap. */
  function serialize<T>(task: Task, job: () => Promise<T>, traced?: BatchTrace): Promise<T> {
    // A traced batch runs with its batch span active (log lines and the LLM's spans see it).
    const work = traced ? traced.bind(job) : job;
    const run = task.queue.then(work, work);
    task.queue = run.catch(() => undefined);
    return run;
  }

  function commit(task: Task, result: BatchResult, offsets: Array<{ topic: string; offset: string }>, isStale: () => boolean): Promise<number> {
    return timedProducerWork(task.partition, 'committing a transaction', () => commitTransaction(task, result, offsets, isStale));
  }

  async function commitTransaction(task: Task, result: BatchResult, offsets: Array<{ topic: string; offset: string }>, isStale: () => boolean): Promise<number> {
    const txn: Transaction = await task.producer.transaction();
    try {
      // In sends of at most SEND_CHUNK messages and SEND_BYTES bytes: kafkajs groups a send's messages by partition
      // in time quadratic in their number (bench/, BENCHMARKS.md), and the broker refuses record batches above
      // message.max.bytes.
      for (const chunk of sendChunks(result.messages)) await txn.sendBatch({ topicMessages: groupMessages(chunk), acks: -1 });
      let changelogEnd = task.changelog;
      if (task.store) {
        const messages = changelogMessages(changelogTopic, task.partition, result.changes, result.streamTime);
        for (const chunk of sendChunks(messages)) {
          const [meta] = await txn.send({ topic: changelogTopic, acks: -1, messages: chunk.map(({ topic: _t, ...m }) => m) });
          changelogEnd = Number(meta!.baseOffset) + chunk.length - 1;
        }
        const regressed = changelogRegressed(changelogTopic, task.partition, changelogEnd, task.changelog);
        if (regressed) throw regressed;
      }
      if (offsets.length > 0) {
        const metadata = JSON.stringify({ c: changelogEnd, i: instanceId });
        await txn.sendOffsets({ consumerGroupId: groupId, topics: offsets.map(({ topic, offset }) => ({ topic, partitions: [{ partition: task.partition, offset, metadata }] })) });
      }
      if (isStale()) throw new AgentStreamsError(ErrorCode.TASK_FENCED, `Partition ${task.partition} was reassigned during the batch; aborting it.`, { retriable: true });
      await txn.commit();
      options.metrics?.transactionsCommitted.inc({ processor });
      return changelogEnd;
    } catch (error) {
      await txn.abort().catch(() => undefined);
      options.metrics?.transactionsAborted.inc({ processor });
      throw error;
    }
  }

  async function afterCommit(task: Task, result: BatchResult, changelogEnd: number, nextOffset: string, heartbeat: () => Promise<void> = async () => {}): Promise<void> {
    if (task.store) {
      const changes = [...result.changes].map(([key, entry]) => ({ key, entry }));
      // Kafka has the batch already; Redis must get it too. While Redis is away the partition waits here
      // (heartbeating, so the group keeps it) rather than moving on with stale state.
      const outcome = await withRetry(() => task.store!.apply(changes, changelogEnd, result.streamTime, nextOffset, task.changelog), transient, {
        isRetriable: () => true,
        onRetry: (e) => {
          log('state.retry', { partition: task.partition, message: (e as Error).message });
          void heartbeat().catch(() => undefined);
        },
      });
      if (outcome === 'lost') {
        // Redis lost state between this batch's read and its apply. The batch is committed in Kafka, so
        // rebuilding from the changelog up to the committed position includes it.
        await withRetry(() => recover(task, 'redis lost state during the batch'), transient, { isRetriable: unlessStateLost, onRetry: () => void heartbeat().catch(() => undefined) });
        return;
      }
    }
    task.changelog = changelogEnd;
    task.streamTime = result.streamTime;
  }

  async function handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    if (batch.messages.length === 0) return;
    health.lag = Number(batch.offsetLag()) + batch.messages.length;
    const task = await taskFor(batch.partition);
    // Tracing (when on): a batch span linked to the records' producers, a span per sampled record; see docs/tracing.md.
    const traced = tracingActive() ? new BatchTrace(batch.messages, { topic: batch.topic, partition: batch.partition, group: groupId }) : undefined;
    const job = serialize(task, async () => {
      if (!isRunning() || isStale()) return;
      const started = performance.now();
      // The consumer may have been positioned from offsets fetched before the previous owner's last transaction
      // completed: skip what that transaction already covered.
      const floor = Math.max(Number(task.startOffset.get(batch.topic) ?? -1), Number(task.nextOffset.get(batch.topic) ?? -1));
      const fresh = batch.messages.filter((m) => Number(m.offset) >= floor);
      if (fresh.length === 0) {
        resolveOffset(batch.lastOffset());
        return;
      }
      const sources: SourceRecord[] = fresh.map((m) => ({
        topic: batch.topic, partition: batch.partition, offset: m.offset, timestamp: m.timestamp, key: m.key, value: m.value,
        headers: m.headers as Record<string, Buffer | string | undefined>,
      }));
      await withRetry(() => serde.resolve(sources.map((s) => s.value)), transient, { onRetry: () => void heartbeat().catch(() => undefined) });
      const scope: TaskScope = { topology, processor, spec, partition: batch.partition, codec, tables, eventTimeBound };
      const prepared = prepareBatch(scope, sources);
      let entries = new Map<string, StateEntry>();
      if (task.store) {
        entries = await readState(task, prepared.keys, prepared.maxEventTime, () => void heartbeat().catch(() => undefined));
      }
      // An enrichment call (an LLM, a Batches poll) can outlast the session timeout: heartbeat while it runs, or the
      // group evicts the member, the commit fails, and the batch is enriched (and billed) again.
      const answers =
        enrichment && prepared.requests.size > 0
          ? await keepingAlive(heartbeat, () => withRetry(() => enrichment(prepared.requests, traced ? (offset) => traced.contextOf(offset) : undefined), transient, { isRetriable: () => true }))
          : undefined;
      const result = runBatch(scope, prepared, entries, task.streamTime, { answers });
      if (traced) {
        // Each output carries the context of the record that caused it; headers already there stay.
        for (const [i, message] of result.messages.entries()) {
          const origin = result.origins[i]!;
          message.headers = traced.stamp(message.headers, origin < 0 ? undefined : prepared.items[origin]!.source.offset);
        }
      }
      const nextOffset = String(Number(batch.lastOffset()) + 1);
      let changelogEnd: number;
      try {
        changelogEnd = await commit(task, result, [{ topic: batch.topic, offset: nextOffset }], isStale);
      } catch (error) {
        // Fenced, or failed otherwise (a broker restarting mid-commit): either way the partition's transactional
        // producer is not trusted again. Dropping the task makes the next batch start a fresh one, whose
        // initialisation aborts whatever this transaction left open, and recover state from the committed offsets.
        log(isFenced(error) ? 'task.fenced' : 'task.commit-failed', { topic: batch.topic, partition: batch.partition, offset: fresh[0]!.offset, lastOffset: batch.lastOffset(), message: (error as Error).message });
        if (!isFenced(error)) health.commitFailures += 1;
        // Not awaited: dropping waits for this very job to finish.
        void dropTask(batch.partition);
        throw error;
      }
      for (const message of result.messages) if (message.topic === topology.deadLetterTopic) log('record.dead-lettered', deadLetterLogFields(message));
      task.nextOffset.set(batch.topic, nextOffset);
      rememberCommit(batch.partition, batch.topic, nextOffset);
      resolveOffset(batch.lastOffset());
      await afterCommit(task, result, changelogEnd, nextOffset, heartbeat);
      stats.batches += 1;
      health.commitFailures = 0;
      health.lastProgress = Date.now();
      health.lag = Number(batch.offsetLag());
      stats.records += sources.length;
      stats.deadLettered += result.counts.deadLettered;
      stats.late += result.counts.late;
      stats.amended += result.counts.amended;
      const labels = { processor, topic: batch.topic, partition: String(batch.partition) };
      options.metrics?.recordsConsumed.inc(labels, sources.length);
      options.metrics?.recordsProduced.inc(labels, result.counts.forwarded);
      options.metrics?.recordsDeadLettered.inc(labels, result.counts.deadLettered);
      options.metrics?.recordsLate.inc(labels, result.counts.late);
      options.metrics?.recordsAmended.inc(labels, result.counts.amended);
      options.metrics?.batchDuration.observe({ processor }, (performance.now() - started) / 1000);
      if (options.metrics) {
        // From each record's event time to the commit of its outputs (consumer lag is reported by the lag monitor).
        const committedAt = Date.now();
        const endToEnd = options.metrics.endToEndLatency.labels({ processor });
        for (const item of prepared.items) if (item.ok) endToEnd.observe(Math.max(0, committedAt - item.record.timestamp) / 1000);
      }
      await heartbeat();
    }, traced);
    await (traced ? traced.around(job) : job);
  }

  /**
   * Reads the task's state for `keys` (and the windows due by `dueBy`). When Redis has lost this task's state, or
   * its last writes (flushed, replaced, restarted without them, expired), it is rebuilt from the changelog first:
   * for batches and for wall-clock punctuation alike, or an idle window whose state was lost would never close.
   */
  async function readState(task: Task, keys: string[], dueBy: number, onRetry: () => void = () => {}): Promise<Map<string, StateEntry>> {
    const store = task.store!;
    let read = await withRetry(() => store.read(keys, dueBy), transient, {
      isRetriable: () => true,
      onRetry: (e) => {
        log('state.retry', { partition: task.partition, message: (e as Error).message });
        onRetry();
      },
    });
    if ((read.checkpoint?.changelog ?? -1) < task.changelog) {
      await recover(task, 'redis is behind the changelog');
      read = await store.read(keys, dueBy);
    }
    if (options.metrics) {
      const labels = { processor, partition: String(task.partition) };
      options.metrics.stateKeys.set(labels, read.size.keys);
      options.metrics.stateBytes.set(labels, read.size.bytes);
      options.metrics.windowsOpen.set(labels, read.size.windowsOpen);
    }
    return read.entries;
  }

  async function punctuate(): Promise<void> {
    if (spec.kind !== 'windowed' || !spec.wallClockCloseIntervalMs) return;
    const now = clock();
    for (const pending of [...tasks.values()]) {
      const task = await pending.catch(() => undefined);
      if (!task || !task.store || task.nextOffset.size === 0) continue;
      await serialize(task, async () => {
        const entries = await readState(task, [], now);
        if (entries.size === 0) return;
        const scope: TaskScope = { topology, processor, spec, partition: task.partition, codec };
        const result = runPunctuation(scope, entries, task.streamTime, now);
        if (result.changes.size === 0) return;
        const offsets = [...task.nextOffset].map(([topic, offset]) => ({ topic, offset }));
        const changelogEnd = await commit(task, result, offsets, () => false);
        await afterCommit(task, result, changelogEnd, offsets[0]!.offset);
      }).catch((error: Error) => log('punctuate.error', { partition: task.partition, message: error.message }));
    }
  }

  const consumer: Consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    sessionTimeout: config.consumer.sessionTimeoutMs,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 30_000,
    maxBytesPerPartition: config.consumer.maxBytesPerPartition,
    maxWaitTimeInMs: 100,
    retry: { retries: 10 },
  });
  let resolveJoined: () => void = () => {};
  const joined = new Promise<void>((resolve) => (resolveJoined = resolve));
  watchConsumerHealth(consumer, health, log, (assignment) => {
    const mine = new Set(spec.inputs.flatMap((t) => assignment[t] ?? []));
    options.metrics?.rebalances.inc({ processor });
    log('group.join', { partitions: [...mine].sort((a, b) => a - b) });
    // Tasks for partitions we lost are closed; their producers would be fenced by the new owner anyway.
    for (const partition of [...tasks.keys()]) if (!mine.has(partition)) void dropTask(partition);
    // Windows closed by the wall clock need their task even when no record comes: start every assigned one now.
    if (spec.kind === 'windowed' && spec.wallClockCloseIntervalMs) for (const partition of mine) void taskFor(partition).catch(() => undefined);
    resolveJoined();
  });

  await consumer.connect();
  for (const topic of spec.inputs) await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: options.concurrency ?? Math.min(inputPartitions, 6),
    eachBatch: async (payload) => {
      try {
        await handleBatch(payload);
      } catch (error) {
        // kafkajs restarts the consumer from the last resolved offset; say why, once per failure.
        log('batch.error', { topic: payload.batch.topic, partition: payload.batch.partition, offset: payload.batch.firstOffset(), lastOffset: payload.batch.lastOffset(), code: (error as { code?: string }).code, message: (error as Error).message });
        throw error;
      }
    },
  });

  const timer = spec.kind === 'windowed' && spec.wallClockCloseIntervalMs ? setInterval(() => void punctuate(), spec.wallClockCloseIntervalMs) : undefined;
  const tableTimer = tableNames.length > 0 ? setInterval(() => void refreshTables(), options.tableRefreshMs ?? 5_000) : undefined;
  const lagMonitor = options.metrics
    ? startLagMonitor({ admin, groupId, topics: spec.inputs, processor, metrics: options.metrics, intervalMs: config.metrics.lagIntervalMs, log })
    : undefined;

  let stopping: Promise<void> | undefined;
  return {
    instanceId,
    joined,
    stats,
    health(): MemberHealth {
      const problems: string[] = [];
      if (health.crashed !== undefined) problems.push(`the consumer crashed and will not restart: ${health.crashed}`);
      if (health.commitFailures >= 5) problems.push(`${health.commitFailures} commits in a row failed`);
      const idleMs = Date.now() - health.lastProgress;
      if (health.lag > 0 && idleMs > stallMs) problems.push(`no batch completed for ${Math.round(idleMs / 1000)} s while ${health.lag} records wait`);
      const now = Date.now();
      const stuck = [...producerWork.values()].filter((w) => now - w.since > producerStuckMs).sort((a, b) => a.since - b.since);
      if (stuck.length > 0) {
        const { partition, what, since } = stuck[0]!;
        problems.push(`the transactional producer of partition ${partition} has been ${what} for ${Math.round((now - since) / 1000)} s (bound ${producerStuckMs / 1000} s)${stuck.length > 1 ? `; ${stuck.length - 1} more stuck` : ''}`);
      }
      const live = problems.length === 0;
      if (!health.joined) problems.push('not joined to the group yet');
      if (health.rebalancing) problems.push('rebalancing');
      if (health.recovering > 0) problems.push('restoring state from the changelog');
      return { live, ready: live && health.joined && !health.rebalancing && health.recovering === 0, problems };
    },
    stop() {
      stopping ??= (async () => {
        if (timer) clearInterval(timer);
        if (tableTimer) clearInterval(tableTimer);
        lagMonitor?.stop();
        await consumer.stop();
        await consumer.disconnect();
        for (const partition of [...tasks.keys()]) await dropTask(partition);
        await admin.disconnect();
        redis?.disconnect();
      })();
      return stopping;
    },
  };
}
