/**
 * Runs one processor of a topology as a consumer-group member: the Kafka side of exactly-once.
 *
 * Per input partition a task owns a transactional producer whose id is derived from the group and the partition,
 * so a new owner's `initTransactions` fences any zombie. The batches a partition gets within `commit.intervalMs`
 * (AS_COMMIT_INTERVAL_MS) are gathered and committed as one transaction: outputs, dead letters, late records, the
 * state changes (to the changelog) and the consumed offsets — whose metadata records the changelog offset the
 * transaction ended at. Later batches read the gathered, uncommitted changes through an in-memory overlay. Only
 * after the commit are the changes applied to Redis, fenced by that changelog offset. See docs/exactly-once.md for
 * the failure cases.
 */
import { randomUUID } from 'node:crypto';
import { type EachBatchPayload } from 'kafkajs';
import type { KafkaAdmin, KafkaConsumer, KafkaProducer, KafkaTransaction } from '../../runtime/kafka/port.ts';
import { Redis } from 'ioredis';
import type { Config } from '../config/index.ts';
import { AgentStreamsError, ErrorCode, isAgentStreamsError } from '../errors.ts';
import { retry, withRetry } from '../retry.ts';
import type { createMetrics } from '../observability/metrics.ts';
import { AvroSerde, registryClient } from '../serde/avro.ts';
import { readerSchemasOf } from '../serde/readers.ts';
import { processorSpec, tablesOfSpec, type ProcessorSpec, type Topology } from '../topology/topology.ts';
import {
  prepareBatch,
  runBatch,
  runPunctuation,
  type BatchResult,
  type Codec,
  type StateEntry,
  type TaskScope,
} from './batch.ts';
import { deadLetterLogFields, type ProducedMessage, type SourceRecord } from './dead-letter.ts';
import { RedisTaskStore } from '../state/redis-store.ts';
import {
  assertChangelogIntact,
  changelogMessages,
  changelogRegressed,
  readChangelogRange,
  STREAM_TIME_KEY,
} from '../state/changelog.ts';
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
export type EnrichmentService = (
  requests: ReadonlyMap<string, unknown>,
  trace?: EnrichmentTrace,
) => Promise<Map<string, unknown>>;

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
  readonly stats: {
    batches: number;
    records: number;
    deadLettered: number;
    late: number;
    amended: number;
    recoveries: number;
    replayedChangelog: number;
  };
}

interface Task {
  partition: number;
  producer: KafkaProducer;
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
  /** Batches processed but not committed yet: the contents of the next transaction (see `gather`). */
  pending?: Pending;
  /** Dropped (partition lost, commit failed, member stopping): jobs still queued on it do nothing. */
  closed: boolean;
}

/**
 * What a task has processed since its last commit. Nothing of it has reached Kafka or Redis: a crash loses it
 * whole, and the records are processed again from the committed offsets and the state Redis holds for them.
 */
interface Pending {
  messages: ProducedMessage[];
  /** Final state per changed key over the gathered batches: the overlay later batches read through. */
  changes: Map<string, StateEntry | null>;
  streamTime: number;
  /** Next input offset per topic, committed with the transaction. */
  offsets: Map<string, string>;
  /** First gathered offset per topic: where the consumer is put back if the transaction fails. */
  from: Map<string, string>;
  /** The last batch's next input offset (recorded with the Redis checkpoint). */
  lastNext: string;
  records: number;
  since: number;
  timer?: ReturnType<typeof setTimeout>;
  isStale: () => boolean;
  heartbeat: () => Promise<void>;
  /** Run once committed and applied: each gathered batch's counts, metrics and logs. */
  done: Array<(committedAt: number) => void>;
}

/** The task's state as its next batch must see it: what Redis returned, under the uncommitted changes. */
function throughOverlay(
  read: Map<string, StateEntry>,
  overlay: ReadonlyMap<string, StateEntry | null>,
  keys: ReadonlySet<string>,
  dueBy: number,
): Map<string, StateEntry> {
  for (const [key, entry] of overlay) {
    if (entry === null) read.delete(key);
    // A key the batch reads, or one whose earliest window closes within it (Redis' index of due windows has not
    // seen the uncommitted change; it may also list the key by a close time the change has moved on from).
    else if (keys.has(key) || (entry.c !== null && entry.c <= dueBy)) read.set(key, entry);
    else read.delete(key);
  }
  return read;
}

const fencedErrors = new Set([
  'INVALID_PRODUCER_EPOCH',
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_ID_MAPPING',
  'TRANSACTIONAL_ID_NOT_FOUND',
]);

function isFenced(error: unknown): boolean {
  const type = (error as { type?: string }).type;
  return type !== undefined && fencedErrors.has(type);
}

/** The changelog offset a commit recorded in its offset metadata; offsets committed by other tools have none. */
function changelogEndOf(metadata: string | null): number | undefined {
  if (!metadata) return undefined;
  try {
    // @confluentinc/kafka-javascript writes string metadata with its C terminator (docs/kafka-clients.md): a NUL at
    // the end is not part of what was committed.
    const c = (JSON.parse(metadata.endsWith('\u0000') ? metadata.slice(0, -1) : metadata) as { c?: unknown }).c;
    return typeof c === 'number' ? c : undefined;
  } catch {
    return undefined;
  }
}

/** Recovery retries everything but a lost changelog, which no retry can bring back. */
function unlessStateLost(error: unknown): boolean {
  return !isAgentStreamsError(error, ErrorCode.STATE_LOST);
}

function groupMessages(
  messages: ProducedMessage[],
): Array<{ topic: string; messages: Array<Omit<ProducedMessage, 'topic'>> }> {
  const byTopic = new Map<string, Array<Omit<ProducedMessage, 'topic'>>>();
  for (const { topic, ...message } of messages) {
    let list = byTopic.get(topic);
    if (!list) byTopic.set(topic, (list = []));
    list.push(message);
  }
  return [...byTopic].map(([topic, list]) => ({ topic, messages: list }));
}

/**
 * Starts `processor` of `topology` as a consumer-group member: connects (Kafka admin, topics, the registry, Redis,
 * shared tables), subscribes and runs. The returned handle reports health and stops the member.
 */
export async function runProcessor(options: RunProcessorOptions): Promise<ProcessorHandle> {
  const member = new ProcessorMember(options);
  await member.connect();
  await member.subscribe();
  return member;
}

type Offsets = Array<{ topic: string; offset: string }>;
/** What one transaction carries: a batch's result, a punctuation's, or several batches gathered (`Pending`). */
type Committable = Pick<BatchResult, 'messages' | 'changes' | 'streamTime'>;

/**
 * One running member, step by step: `connect` (admin, topics, writer schemas, Redis, tables), `subscribe` (join the
 * group and run), per partition a task (`taskFor` → `restore` its state from the changelog), per batch `onBatch`
 * (`readState` → enrich → run → `commit` → `afterCommit`), wall-clock `punctuate`, and `stop` (drain and close).
 */
class ProcessorMember implements ProcessorHandle {
  readonly instanceId: string;
  readonly joined: Promise<void>;
  readonly stats = {
    batches: 0,
    records: 0,
    deadLettered: 0,
    late: 0,
    amended: 0,
    recoveries: 0,
    replayedChangelog: 0,
  };

  private readonly config: Config;
  private readonly topology: Topology;
  private readonly processor: string;
  private readonly spec: ProcessorSpec;
  private readonly metrics: RunProcessorOptions['metrics'];
  private readonly log: NonNullable<RunProcessorOptions['log']>;
  private readonly clock: () => number;
  private readonly eventTimeBound: { maxAheadMs: number; wallClock: () => number };
  private readonly groupId: string;
  private readonly stores: readonly string[];
  private readonly changelogTopic: string;
  private readonly kafka: ReturnType<typeof kafkaClient>;
  private readonly admin: KafkaAdmin;
  private readonly serde: AvroSerde;
  private readonly codec: Codec;
  private readonly tableNames: string[];
  private readonly enrichment: EnrichmentService | undefined;
  private readonly redis: Redis | undefined;
  private readonly transient = retry({ initialMs: 100, maxMs: 5_000 });
  private tables: Map<string, Map<string, unknown>> = new Map();
  private inputPartitions = 1;
  private readonly tasks = new Map<number, Promise<Task>>();
  /** The task object behind each entry of `tasks`, known as soon as it is created. */
  private readonly taskObjects = new Map<number, Task>();
  /**
   * The next offset this member's own transactions committed, per partition and topic. After a broker restart the
   * consumer's fetched positions (and a new task's committed offsets) can predate the markers of transactions whose
   * commit was acknowledged: the markers are written after the acknowledgement, and offsets of a pending transaction
   * are not returned (kafkajs cannot ask with KIP-447's requireStable). Records below what we committed ourselves are
   * skipped, never processed twice.
   */
  private readonly committedByUs = new Map<number, Map<string, string>>();
  // Health: what /healthz and /readyz tell the platform (kubelet, load balancer) about this member.
  private readonly healthState = { ...consumerHealth(), recovering: 0, commitFailures: 0 };
  private readonly stallMs: number;
  // Transactional producer work in flight, by start time: a broker that stopped answering (frozen, partitioned away)
  // leaves a call hanging through kafkajs' retries for minutes; past the bound the member is not live.
  private readonly producerStuckMs: number;
  private readonly producerWork = new Map<symbol, { partition: number; what: string; since: number }>();
  private resolveJoined: () => void = () => {};
  private consumer: KafkaConsumer | undefined;
  private timers: Array<ReturnType<typeof setInterval>> = [];
  private lagMonitor: { stop(): void } | undefined;
  private stopping: Promise<void> | undefined;
  /** Stopping: every batch commits at once, before the member leaves the group. */
  private draining = false;
  private readonly commitIntervalMs: number;
  private readonly commitMaxRecords: number;

  constructor(private readonly options: RunProcessorOptions) {
    const { config, topology, processor } = options;
    this.config = config;
    this.topology = topology;
    this.processor = processor;
    this.spec = processorSpec(topology, processor);
    this.metrics = options.metrics;
    this.log = options.log ?? (() => {});
    this.clock =
      options.clock ??
      (
        (offset: number) => () =>
          Date.now() + offset
      )(config.clock.offsetMs);
    this.eventTimeBound = { maxAheadMs: config.records.maxEventTimeAheadMs, wallClock: this.clock };
    this.instanceId = options.instanceId ?? randomUUID().slice(0, 8);
    this.groupId = topology.groupId(processor);
    this.stores = topology.storesOf(processor);
    this.changelogTopic = topology.changelogTopic(processor);
    this.stallMs = options.stallMs ?? 120_000;
    this.producerStuckMs = options.producerStuckMs ?? config.health.producerStuckMs;
    this.commitIntervalMs = config.commit.intervalMs;
    this.commitMaxRecords = config.commit.maxRecords;
    this.joined = new Promise<void>((resolve) => (this.resolveJoined = resolve));
    const spec = this.spec;
    this.tableNames = tablesOfSpec(spec);
    this.enrichment = spec.kind === 'process' && spec.enrich ? options.services?.[spec.enrich.service] : undefined;
    if (spec.kind === 'process' && spec.enrich && !this.enrichment) {
      throw new AgentStreamsError(
        ErrorCode.TOPOLOGY_INVALID,
        `Processor "${processor}" enriches through service "${spec.enrich.service}", which this process was not given.`,
      );
    }
    this.kafka = kafkaClient(config, `${processor}-${this.instanceId}`);
    this.admin = this.kafka.admin();
    this.serde = new AvroSerde(registryClient(config));
    const serde = this.serde;
    const readers = readerSchemasOf(processor, spec.readerSchemas);
    this.codec = {
      decode: (buffer) => serde.decodeResolved(buffer, readers),
      recordTypeOf: (buffer) => serde.recordTypeOf(buffer),
      encode: (type, value) => serde.encode(type, value),
    };
    this.redis =
      this.stores.length > 0 || this.tableNames.length > 0
        ? new Redis(config.redis.url, { lazyConnect: true, maxRetriesPerRequest: 2 })
        : undefined;
    this.redis?.on('error', (error: Error) => this.log('redis.error', { message: error.message }));
  }

  /** Step 1: the admin client, the topology's topics, the writer schemas of the outputs, Redis and shared tables. */
  async connect(): Promise<void> {
    const { admin, redis, topology, processor, spec, tableNames, kafka } = this;
    await admin.connect();
    this.inputPartitions = await ensureTopics(admin, topology, processor);
    for (const types of Object.values(spec.outputs ?? {})) for (const type of types) await this.serde.writerFor(type);
    await redis?.connect();
    if (redis)
      this.tables = await withRetry(() => readTables(redis, topology, tableNames, kafka), this.transient, {
        isRetriable: () => true,
      });
  }

  /** Step 2: join the group and run: batches go to `onBatch`; wall-clock punctuation, table refresh and lag monitoring start. */
  async subscribe(): Promise<void> {
    const { config, spec, processor, log } = this;
    const consumer: KafkaConsumer = this.kafka.consumer({
      groupId: this.groupId,
      readUncommitted: false,
      sessionTimeout: config.consumer.sessionTimeoutMs,
      heartbeatInterval: 1_000,
      rebalanceTimeout: 30_000,
      maxBytesPerPartition: config.consumer.maxBytesPerPartition,
      maxWaitTimeInMs: 100,
      retry: { retries: 10 },
    });
    this.consumer = consumer;
    watchConsumerHealth(consumer, this.healthState, log, (assignment) => {
      const mine = new Set(spec.inputs.flatMap((t) => assignment[t] ?? []));
      this.metrics?.rebalances.inc({ processor });
      log('group.join', { partitions: [...mine].sort((a, b) => a - b) });
      // Tasks for partitions we lost are closed, their uncommitted batches discarded (the new owner processes them
      // again from the committed offsets); their producers would be fenced by the new owner anyway.
      for (const partition of [...this.tasks.keys()]) if (!mine.has(partition)) void this.dropTask(partition, false);
      // Windows closed by the wall clock need their task even when no record comes: start every assigned one now.
      if (spec.kind === 'windowed' && spec.wallClockCloseIntervalMs)
        for (const partition of mine) void this.taskFor(partition).catch(() => undefined);
      this.resolveJoined();
    });

    await consumer.connect();
    for (const topic of spec.inputs) await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.concurrency ?? Math.min(this.inputPartitions, 6),
      eachBatch: async (payload) => {
        try {
          await this.onBatch(payload);
        } catch (error) {
          // kafkajs restarts the consumer from the last resolved offset; say why, once per failure.
          log('batch.error', {
            topic: payload.batch.topic,
            partition: payload.batch.partition,
            offset: payload.batch.firstOffset(),
            lastOffset: payload.batch.lastOffset(),
            code: (error as { code?: string }).code,
            message: (error as Error).message,
          });
          throw error;
        }
      },
    });

    if (spec.kind === 'windowed' && spec.wallClockCloseIntervalMs)
      this.timers.push(setInterval(() => void this.punctuate(), spec.wallClockCloseIntervalMs));
    if (this.tableNames.length > 0)
      this.timers.push(setInterval(() => void this.refreshTables(), this.options.tableRefreshMs ?? 5_000));
    if (this.metrics) {
      this.lagMonitor = startLagMonitor({
        admin: this.admin,
        groupId: this.groupId,
        topics: spec.inputs,
        processor,
        metrics: this.metrics,
        intervalMs: config.metrics.lagIntervalMs,
        log,
      });
    }
  }

  health(): MemberHealth {
    const { healthState: health, stallMs, producerStuckMs } = this;
    const problems: string[] = [];
    if (health.crashed !== undefined) problems.push(`the consumer crashed and will not restart: ${health.crashed}`);
    if (health.commitFailures >= 5) problems.push(`${health.commitFailures} commits in a row failed`);
    const idleMs = Date.now() - health.lastProgress;
    if (health.lag > 0 && idleMs > stallMs)
      problems.push(`no batch completed for ${Math.round(idleMs / 1000)} s while ${health.lag} records wait`);
    const now = Date.now();
    const stuck = [...this.producerWork.values()]
      .filter((w) => now - w.since > producerStuckMs)
      .sort((a, b) => a.since - b.since);
    if (stuck.length > 0) {
      const { partition, what, since } = stuck[0]!;
      problems.push(
        `the transactional producer of partition ${partition} has been ${what} for ${Math.round((now - since) / 1000)} s (bound ${producerStuckMs / 1000} s)${stuck.length > 1 ? `; ${stuck.length - 1} more stuck` : ''}`,
      );
    }
    const live = problems.length === 0;
    if (!health.joined) problems.push('not joined to the group yet');
    if (health.rebalancing) problems.push('rebalancing');
    if (health.recovering > 0) problems.push('restoring state from the changelog');
    return { live, ready: live && health.joined && !health.rebalancing && health.recovering === 0, problems };
  }

  /** The last step: stop the timers, drain (finish the batch in flight, commit), leave the group, close every client. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const timer of this.timers) clearInterval(timer);
      this.lagMonitor?.stop();
      // Batches still arriving commit at once, and what is gathered commits before the member leaves the group.
      this.draining = true;
      await Promise.all([...this.tasks.keys()].map((partition) => this.flushTask(partition)));
      await this.consumer?.stop();
      await this.consumer?.disconnect();
      for (const partition of [...this.tasks.keys()]) await this.dropTask(partition, true);
      await this.admin.disconnect();
      this.redis?.disconnect();
    })();
    return this.stopping;
  }

  private async refreshTables(): Promise<void> {
    const { redis, tableNames } = this;
    if (!redis || tableNames.length === 0) return;
    this.tables = await readTables(redis, this.topology, tableNames, this.kafka).catch((error: Error) => {
      this.log('tables.refresh-failed', { message: error.message });
      return this.tables;
    });
  }

  private rememberCommit(partition: number, topic: string, offset: string): void {
    let byTopic = this.committedByUs.get(partition);
    if (!byTopic) this.committedByUs.set(partition, (byTopic = new Map()));
    if (Number(offset) > Number(byTopic.get(topic) ?? -1)) byTopic.set(topic, offset);
  }

  /**
   * Committed offsets of the task's partition. Read after this task's producer has been initialised, they are
   * stable: initialising a transactional id completes or aborts the previous owner's open transaction first.
   * (The offsets the consumer fetched when it joined may predate that transaction's markers.)
   */
  private async committedOffsets(
    partition: number,
  ): Promise<Array<{ topic: string; offset: string; metadata: string | null }>> {
    const committed = await this.admin.fetchOffsets({ groupId: this.groupId, topics: this.spec.inputs });
    return committed.flatMap(({ topic, partitions }) =>
      partitions
        .filter((p) => p.partition === partition)
        .map((p) => ({ topic, offset: p.offset, metadata: p.metadata })),
    );
  }

  private async timedProducerWork<T>(partition: number, what: string, work: () => Promise<T>): Promise<T> {
    const id = Symbol(what);
    this.producerWork.set(id, { partition, what, since: Date.now() });
    try {
      return await work();
    } finally {
      this.producerWork.delete(id);
    }
  }

  /** Brings the task's Redis state up to the committed changelog position, replaying only what Redis has not applied. */
  private async restore(task: Task, reason: string): Promise<void> {
    const { kafka, changelogTopic } = this;
    const store = task.store!;
    let target = -1;
    for (const { metadata } of await this.committedOffsets(task.partition)) {
      const c = changelogEndOf(metadata);
      if (c !== undefined && c > target) target = c;
    }
    const { checkpoint } = await store.read([]);
    // A recreated changelog topic would otherwise freeze the state (every apply fenced as a replay): fail loudly.
    await assertChangelogIntact(kafka, changelogTopic, task.partition, {
      checkpoint: checkpoint?.changelog ?? -1,
      committed: target,
    });
    const from = checkpoint ? checkpoint.changelog + 1 : 0;
    task.changelog = Math.max(checkpoint?.changelog ?? -1, target);
    task.streamTime = checkpoint?.streamTime ?? Number.NEGATIVE_INFINITY;
    if (target < from) return;
    // Only the range Redis has not applied is read: the uncommitted tail after a crash, or everything after a
    // Redis loss. Each chunk is applied with its last offset as the fence.
    this.stats.recoveries += 1;
    this.healthState.recovering += 1;
    this.log('state.recover', { partition: task.partition, reason, from, to: target });
    try {
      const replayed = await readChangelogRange(
        kafka,
        changelogTopic,
        task.partition,
        from,
        target,
        async (records) => {
          const changes = new Map<string, StateEntry | null>();
          let streamTime = task.streamTime;
          for (const r of records) {
            if (r.key === STREAM_TIME_KEY) streamTime = r.streamTime ?? streamTime;
            else changes.set(r.key, r.entry);
          }
          await store.apply(
            [...changes].map(([key, entry]) => ({ key, entry })),
            records[records.length - 1]!.offset,
            streamTime,
            checkpoint?.offset ?? '0',
          );
          task.streamTime = streamTime;
        },
      );
      this.stats.replayedChangelog += replayed;
    } finally {
      this.healthState.recovering -= 1;
    }
  }

  private createTask(partition: number): Task {
    const { redis, stores, groupId, options } = this;
    const producer = this.kafka.producer({
      transactionalId: `${groupId}-${partition}`,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 60_000,
      retry: { initialRetryTime: 30, retries: 10 },
    });
    const task: Task = {
      partition,
      producer,
      ...(redis && stores.length > 0
        ? {
            store: new RedisTaskStore(
              redis,
              groupId,
              partition,
              options.stateTtlMs ?? 7 * 24 * 3600_000,
              options.metrics,
            ),
          }
        : {}),
      streamTime: Number.NEGATIVE_INFINITY,
      changelog: -1,
      nextOffset: new Map(),
      startOffset: new Map(),
      queue: Promise.resolve(),
      ready: Promise.resolve(),
      closed: false,
    };
    task.ready = (async () => {
      await this.timedProducerWork(partition, 'initialising', async () => {
        await producer.connect();
        // The first transaction call initialises the producer id: that is what fences a previous owner.
        const init = await producer.transaction();
        await init.abort();
      });
      for (const c of await this.committedOffsets(partition))
        if (Number(c.offset) >= 0) task.startOffset.set(c.topic, c.offset);
      for (const [topic, offset] of this.committedByUs.get(partition) ?? []) {
        if (Number(offset) > Number(task.startOffset.get(topic) ?? -1)) task.startOffset.set(topic, offset);
      }
      // Punctuation commits at these offsets until a batch moves them: windows of a partition that gets no new
      // record after a restart still close by the wall clock.
      for (const [topic, offset] of task.startOffset) task.nextOffset.set(topic, offset);
      if (task.store)
        await withRetry(() => this.restore(task, 'assigned'), this.transient, {
          isRetriable: unlessStateLost,
          onRetry: (e) => this.log('state.retry', { partition, message: (e as Error).message }),
        });
    })();
    return task;
  }

  private taskFor(partition: number): Promise<Task> {
    let task = this.tasks.get(partition);
    if (!task) {
      const created = this.createTask(partition);
      const starting = created.ready.then(() => created);
      task = starting;
      this.tasks.set(partition, starting);
      this.taskObjects.set(partition, created);
      // A failed start (e.g. Redis down during recovery) is retried by the next batch.
      starting.catch(() => {
        if (this.tasks.get(partition) !== starting) return;
        this.tasks.delete(partition);
        this.taskObjects.delete(partition);
      });
    }
    return task;
  }

  /**
   * Closes a task: `commit` (stopping) commits its gathered batches first; otherwise (partition lost, commit failed)
   * they are discarded, and whoever owns the partition next processes them again from the committed offsets.
   */
  private async dropTask(partition: number, commit = false): Promise<void> {
    const starting = this.tasks.get(partition);
    if (!starting) return;
    this.tasks.delete(partition);
    this.taskObjects.delete(partition);
    const task = await starting.catch(() => undefined);
    if (!task) return;
    if (commit) await this.serialize(task, () => this.flush(task)).catch(() => undefined);
    task.closed = true;
    if (task.pending?.timer) clearTimeout(task.pending.timer);
    task.pending = undefined;
    await task.queue.catch(() => undefined);
    await task.producer.disconnect().catch(() => undefined);
  }

  /** Commits the task's gathered batches now (stopping); a failure is logged by `flush` and left to the next owner. */
  private async flushTask(partition: number): Promise<void> {
    const task = await this.tasks.get(partition)?.catch(() => undefined);
    if (task && !task.closed) await this.serialize(task, () => this.flush(task)).catch(() => undefined);
  }

  /** Whether the gathered batches are to be committed now: the interval has passed, or the size bound is reached. */
  private commitDue(pending: Pending): boolean {
    return (
      this.draining ||
      this.commitIntervalMs === 0 ||
      pending.records >= this.commitMaxRecords ||
      Date.now() - pending.since >= this.commitIntervalMs
    );
  }

  /**
   * Commits the task's gathered batches as one transaction, then applies their state changes to Redis. On failure
   * the consumer is put back to the first gathered offset, the task is dropped (its producer is not trusted again,
   * and the next task's initialisation aborts whatever this transaction left open), and the error is rethrown.
   */
  private async flush(task: Task): Promise<void> {
    const pending = task.pending;
    if (!pending || task.closed) return;
    task.pending = undefined;
    if (pending.timer) clearTimeout(pending.timer);
    const health = this.healthState;
    const offsets = [...pending.offsets].map(([topic, offset]) => ({ topic, offset }));
    let changelogEnd: number;
    try {
      changelogEnd = await this.commit(task, pending, offsets, pending.isStale);
    } catch (error) {
      // Fenced, or failed otherwise (a broker restarting mid-commit): either way the partition's transactional
      // producer is not trusted again.
      this.log(isFenced(error) ? 'task.fenced' : 'task.commit-failed', {
        partition: task.partition,
        from: Object.fromEntries(pending.from),
        to: Object.fromEntries(pending.offsets),
        records: pending.records,
        message: (error as Error).message,
      });
      if (!isFenced(error)) health.commitFailures += 1;
      // The consumer has moved past the gathered records (their offsets were resolved so that fetching went on):
      // back to the first of them. A partition no longer ours is ignored by the consumer.
      for (const [topic, offset] of pending.from) {
        try {
          this.consumer?.seek({ topic, partition: task.partition, offset });
        } catch {
          // The consumer is not running (stopping): the next owner starts from the committed offsets.
        }
      }
      // Not awaited: dropping waits for this very job to finish.
      if (this.taskObjects.get(task.partition) === task) void this.dropTask(task.partition, false);
      task.closed = true;
      throw error;
    }
    for (const [topic, offset] of pending.offsets) {
      task.nextOffset.set(topic, offset);
      this.rememberCommit(task.partition, topic, offset);
    }
    await this.afterCommit(task, pending, changelogEnd, pending.lastNext, pending.heartbeat);
    health.commitFailures = 0;
    health.lastProgress = Date.now();
    const committedAt = Date.now();
    for (const done of pending.done) done(committedAt);
  }

  /** A timer that commits the task's gathered batches once the interval has passed, if no batch has done so by then. */
  private scheduleTimer(task: Task, pending: Pending): ReturnType<typeof setTimeout> {
    const delay = Math.max(0, pending.since + this.commitIntervalMs - Date.now());
    return setTimeout(() => {
      if (task.pending !== pending || task.closed) return;
      void this.serialize(task, () => (task.pending === pending ? this.flush(task) : Promise.resolve())).catch(
        () => undefined, // logged by flush; the task is dropped and the consumer put back
      );
    }, delay);
  }

  /** Runs `work` after every earlier job of the task: batches of several inputs and punctuation never overlap. */
  private serialize<T>(task: Task, job: () => Promise<T>, traced?: BatchTrace): Promise<T> {
    // A traced batch runs with its batch span active (log lines and the LLM's spans see it).
    const work = traced ? traced.bind(job) : job;
    const run = task.queue.then(work, work);
    task.queue = run.catch(() => undefined);
    return run;
  }

  /** One transaction: the outputs, the state changes to the changelog, and the consumed offsets. */
  private commit(task: Task, result: Committable, offsets: Offsets, isStale: () => boolean): Promise<number> {
    return this.timedProducerWork(task.partition, 'committing a transaction', () =>
      this.commitTransaction(task, result, offsets, isStale),
    );
  }

  private async commitTransaction(
    task: Task,
    result: Committable,
    offsets: Offsets,
    isStale: () => boolean,
  ): Promise<number> {
    const { changelogTopic, processor } = this;
    const txn: KafkaTransaction = await task.producer.transaction();
    try {
      // In sends of at most SEND_CHUNK messages and SEND_BYTES bytes: kafkajs groups a send's messages by partition
      // in time quadratic in their number (bench/, BENCHMARKS.md), and the broker refuses record batches above
      // message.max.bytes.
      for (const chunk of sendChunks(result.messages))
        await txn.sendBatch({ topicMessages: groupMessages(chunk), acks: -1 });
      let changelogEnd = task.changelog;
      if (task.store) {
        const messages = changelogMessages(changelogTopic, task.partition, result.changes, result.streamTime);
        for (const chunk of sendChunks(messages)) {
          const [meta] = await txn.send({
            topic: changelogTopic,
            acks: -1,
            messages: chunk.map(({ topic: _t, ...m }) => m),
          });
          changelogEnd = Number(meta!.baseOffset) + chunk.length - 1;
        }
        const regressed = changelogRegressed(changelogTopic, task.partition, changelogEnd, task.changelog);
        if (regressed) throw regressed;
      }
      if (offsets.length > 0) {
        const metadata = JSON.stringify({ c: changelogEnd, i: this.instanceId });
        await txn.sendOffsets({
          consumerGroupId: this.groupId,
          topics: offsets.map(({ topic, offset }) => ({
            topic,
            partitions: [{ partition: task.partition, offset, metadata }],
          })),
        });
      }
      if (isStale())
        throw new AgentStreamsError(
          ErrorCode.TASK_FENCED,
          `Partition ${task.partition} was reassigned during the batch; aborting it.`,
          { retriable: true },
        );
      await txn.commit();
      this.metrics?.transactionsCommitted.inc({ processor });
      return changelogEnd;
    } catch (error) {
      await txn.abort().catch(() => undefined);
      this.metrics?.transactionsAborted.inc({ processor });
      throw error;
    }
  }

  /** After the commit: the state changes applied to Redis, fenced by the changelog offset the batch ended at. */
  private async afterCommit(
    task: Task,
    result: Committable,
    changelogEnd: number,
    nextOffset: string,
    heartbeat: () => Promise<void> = async () => {},
  ): Promise<void> {
    if (task.store) {
      const changes = [...result.changes].map(([key, entry]) => ({ key, entry }));
      // Kafka has the batch already; Redis must get it too. While Redis is away the partition waits here
      // (heartbeating, so the group keeps it) rather than moving on with stale state.
      const outcome = await withRetry(
        () => task.store!.apply(changes, changelogEnd, result.streamTime, nextOffset, task.changelog),
        this.transient,
        {
          isRetriable: () => true,
          onRetry: (e) => {
            this.log('state.retry', { partition: task.partition, message: (e as Error).message });
            void heartbeat().catch(() => undefined);
          },
        },
      );
      if (outcome === 'lost') {
        // Redis lost state between this batch's read and its apply. The batch is committed in Kafka, so
        // rebuilding from the changelog up to the committed position includes it.
        await withRetry(() => this.restore(task, 'redis lost state during the batch'), this.transient, {
          isRetriable: unlessStateLost,
          onRetry: () => void heartbeat().catch(() => undefined),
        });
        return;
      }
    }
    task.changelog = changelogEnd;
    task.streamTime = result.streamTime;
  }

  /**
   * One fetched batch of one partition: read state (through the uncommitted changes), enrich, run the processor,
   * and gather the result into the task's open transaction; commit it when due (`commitDue`), else by a timer.
   */
  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { topology, processor, spec, codec, eventTimeBound, enrichment, transient, metrics, log, stats } = this;
    const health = this.healthState;
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    if (batch.messages.length === 0) return;
    health.lag = Number(batch.offsetLag()) + batch.messages.length;
    const task = await this.taskFor(batch.partition);
    // Tracing (when on): a batch span linked to the records' producers, a span per sampled record; see docs/tracing.md.
    const traced = tracingActive()
      ? new BatchTrace(batch.messages, { topic: batch.topic, partition: batch.partition, group: this.groupId })
      : undefined;
    const job = this.serialize(
      task,
      async () => {
        // A dropped task (its commit failed, the consumer was put back) processes nothing: the records come again.
        if (!isRunning() || isStale() || task.closed) return;
        const started = performance.now();
        // The consumer may have been positioned from offsets fetched before the previous owner's last transaction
        // completed: skip what that transaction already covered. Records gathered but not yet committed are skipped
        // too: a rejoin positions the consumer at the committed offsets again.
        const floor = Math.max(
          Number(task.startOffset.get(batch.topic) ?? -1),
          Number(task.nextOffset.get(batch.topic) ?? -1),
          Number(task.pending?.offsets.get(batch.topic) ?? -1),
        );
        const fresh = batch.messages.filter((m) => Number(m.offset) >= floor);
        if (fresh.length === 0) {
          resolveOffset(batch.lastOffset());
          return;
        }
        const sources: SourceRecord[] = fresh.map((m) => ({
          topic: batch.topic,
          partition: batch.partition,
          offset: m.offset,
          timestamp: m.timestamp,
          key: m.key,
          value: m.value,
          headers: m.headers as Record<string, Buffer | string | undefined>,
        }));
        await withRetry(() => this.serde.resolve(sources.map((s) => s.value)), transient, {
          onRetry: () => void heartbeat().catch(() => undefined),
        });
        const scope: TaskScope = {
          topology,
          processor,
          spec,
          partition: batch.partition,
          codec,
          tables: this.tables,
          eventTimeBound,
        };
        const prepared = prepareBatch(scope, sources);
        let entries = new Map<string, StateEntry>();
        if (task.store) {
          const overlay = task.pending?.changes;
          entries = await this.readState(
            task,
            overlay ? prepared.keys.filter((key) => !overlay.has(key)) : prepared.keys,
            prepared.maxEventTime,
            () => void heartbeat().catch(() => undefined),
          );
          if (overlay) entries = throughOverlay(entries, overlay, new Set(prepared.keys), prepared.maxEventTime);
        }
        // An enrichment call (an LLM, a Batches poll) can outlast the session timeout: heartbeat while it runs, or the
        // group evicts the member, the commit fails, and the batch is enriched (and billed) again.
        const answers =
          enrichment && prepared.requests.size > 0
            ? await keepingAlive(heartbeat, () =>
                withRetry(
                  () => enrichment(prepared.requests, traced ? (offset) => traced.contextOf(offset) : undefined),
                  transient,
                  { isRetriable: () => true },
                ),
              )
            : undefined;
        const streamTimeBefore = task.pending?.streamTime ?? task.streamTime;
        const result = runBatch(scope, prepared, entries, streamTimeBefore, { answers });
        if (traced) {
          // Each output carries the context of the record that caused it; headers already there stay.
          for (const [i, message] of result.messages.entries()) {
            const origin = result.origins[i]!;
            message.headers = traced.stamp(
              message.headers,
              origin < 0 ? undefined : prepared.items[origin]!.source.offset,
            );
          }
        }
        const nextOffset = String(Number(batch.lastOffset()) + 1);
        const pending = this.gather(task, result, batch.topic, fresh[0]!.offset, nextOffset, isStale, heartbeat);
        pending.records += sources.length;
        const offsetLag = Number(batch.offsetLag());
        const processedMs = performance.now() - started;
        pending.done.push((committedAt) => {
          for (const message of result.messages)
            if (message.topic === topology.deadLetterTopic) log('record.dead-lettered', deadLetterLogFields(message));
          stats.batches += 1;
          health.lag = offsetLag;
          stats.records += sources.length;
          stats.deadLettered += result.counts.deadLettered;
          stats.late += result.counts.late;
          stats.amended += result.counts.amended;
          const labels = { processor, topic: batch.topic, partition: String(batch.partition) };
          metrics?.recordsConsumed.inc(labels, sources.length);
          metrics?.recordsProduced.inc(labels, result.counts.forwarded);
          metrics?.recordsDeadLettered.inc(labels, result.counts.deadLettered);
          metrics?.recordsLate.inc(labels, result.counts.late);
          metrics?.recordsAmended.inc(labels, result.counts.amended);
          metrics?.batchDuration.observe({ processor }, processedMs / 1000);
          if (metrics) {
            // From each record's event time to the commit of its outputs (consumer lag is reported by the lag monitor).
            const endToEnd = metrics.endToEndLatency.labels({ processor });
            for (const item of prepared.items)
              if (item.ok) endToEnd.observe(Math.max(0, committedAt - item.record.timestamp) / 1000);
          }
        });
        if (!this.commitDue(pending)) {
          // Fetching goes on from after this batch; if the transaction fails, `flush` puts the consumer back.
          resolveOffset(batch.lastOffset());
          pending.timer ??= this.scheduleTimer(task, pending);
        } else if (this.commitIntervalMs === 0 || this.draining) {
          // Commit before the offset moves on, as one transaction per batch always did; a failure fails the batch.
          await this.flush(task);
          resolveOffset(batch.lastOffset());
        } else {
          // Due: the commit runs as the task's next job while the consumer fetches the next batch.
          resolveOffset(batch.lastOffset());
          void this.serialize(task, () => (task.pending === pending ? this.flush(task) : Promise.resolve())).catch(
            () => undefined, // logged by flush; the task is dropped and the consumer put back
          );
        }
        await heartbeat();
      },
      traced,
    );
    await (traced ? traced.around(job) : job);
  }

  /** Adds a batch's result to the task's open transaction (opening one): its changes become the overlay. */
  private gather(
    task: Task,
    result: BatchResult,
    topic: string,
    firstOffset: string,
    nextOffset: string,
    isStale: () => boolean,
    heartbeat: () => Promise<void>,
  ): Pending {
    const pending: Pending = (task.pending ??= {
      messages: [] as ProducedMessage[],
      changes: new Map(),
      streamTime: task.streamTime,
      offsets: new Map(),
      from: new Map(),
      lastNext: nextOffset,
      records: 0,
      since: Date.now(),
      isStale,
      heartbeat,
      done: [],
    });
    for (const message of result.messages) pending.messages.push(message);
    for (const [key, entry] of result.changes) pending.changes.set(key, entry);
    pending.streamTime = result.streamTime;
    if (!pending.from.has(topic)) pending.from.set(topic, firstOffset);
    pending.offsets.set(topic, nextOffset);
    pending.lastNext = nextOffset;
    pending.isStale = isStale;
    pending.heartbeat = heartbeat;
    return pending;
  }

  /**
   * Reads the task's state for `keys` (and the windows due by `dueBy`). When Redis has lost this task's state, or
   * its last writes (flushed, replaced, restarted without them, expired), it is rebuilt from the changelog first:
   * for batches and for wall-clock punctuation alike, or an idle window whose state was lost would never close.
   */
  private async readState(
    task: Task,
    keys: string[],
    dueBy: number,
    onRetry: () => void = () => {},
  ): Promise<Map<string, StateEntry>> {
    const store = task.store!;
    let read = await withRetry(() => store.read(keys, dueBy), this.transient, {
      isRetriable: () => true,
      onRetry: (e) => {
        this.log('state.retry', { partition: task.partition, message: (e as Error).message });
        onRetry();
      },
    });
    if ((read.checkpoint?.changelog ?? -1) < task.changelog) {
      await this.restore(task, 'redis is behind the changelog');
      read = await store.read(keys, dueBy);
    }
    if (this.metrics) {
      const labels = { processor: this.processor, partition: String(task.partition) };
      this.metrics.stateKeys.set(labels, read.size.keys);
      this.metrics.stateBytes.set(labels, read.size.bytes);
      this.metrics.windowsOpen.set(labels, read.size.windowsOpen);
    }
    return read.entries;
  }

  /** Wall-clock punctuation: closes the windows due by now in every task, each in its own transaction. */
  private async punctuate(): Promise<void> {
    const { spec, topology, processor, codec } = this;
    if (spec.kind !== 'windowed' || !spec.wallClockCloseIntervalMs) return;
    const now = this.clock();
    for (const pending of [...this.tasks.values()]) {
      const task = await pending.catch(() => undefined);
      if (!task || !task.store || task.nextOffset.size === 0) continue;
      await this.serialize(task, async () => {
        if (task.closed) return;
        // Gathered batches commit first: the punctuation reads and commits on top of them.
        await this.flush(task);
        if (task.closed) return;
        const entries = await this.readState(task, [], now);
        if (entries.size === 0) return;
        const scope: TaskScope = { topology, processor, spec, partition: task.partition, codec };
        const result = runPunctuation(scope, entries, task.streamTime, now);
        if (result.changes.size === 0) return;
        const offsets = [...task.nextOffset].map(([topic, offset]) => ({ topic, offset }));
        const changelogEnd = await this.commit(task, result, offsets, () => false);
        await this.afterCommit(task, result, changelogEnd, offsets[0]!.offset);
      }).catch((error: Error) => this.log('punctuate.error', { partition: task.partition, message: error.message }));
    }
  }
}
