/**
 * Kafka → ClickHouse sink connector: a consumer-group member that decodes Avro records (through the registry),
 * maps each to a row of one table with the mapping registered for its record type, inserts the rows in large
 * batches through `ClickHouseWriter`, and commits the consumed offsets only after those rows are in ClickHouse.
 *
 * The unit of commit is a checkpoint (Quix's word): every `commitIntervalMs`, the offsets reached so far are noted,
 * the writer is flushed, the dead letters gathered since the last checkpoint are produced, and then the noted
 * offsets are committed. A crash anywhere in between leaves offsets behind what ClickHouse holds, never ahead of
 * it: the records come again and their rows are inserted again. Rows carry deterministic ids and the tables are
 * ReplacingMergeTree read with FINAL, so a re-inserted row is invisible to the documented queries: exactly-once
 * as queried (docs/clickhouse-sink.md says what raw `count()` shows).
 *
 * Bad input goes to the dead-letter topic with runtime/engine/dead-letter.ts's headers and processing goes on:
 * undecodable bytes (stage `deserialize`), a record type with no mapping (`route`), a mapping that throws, a row
 * that misses a column, or a row ClickHouse refuses (`process`, with the error code saying which).
 *
 * A full writer pauses only the partition that hit it, for the writer's `retryAfterMs`; the records not yet
 * written are fetched again when it resumes.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EachBatchPayload, KafkaConsumer, KafkaProducer } from '../../runtime/kafka/port.ts';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Config } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode, isAgentStreamsError } from '../../runtime/errors.ts';
import { retry, withRetry } from '../../runtime/retry.ts';
import type { Metrics } from '../../runtime/observability/metrics.ts';
import { startLagMonitor, type LagMonitor } from '../../runtime/observability/lag.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import {
  deadLetter,
  deadLetterLogFields,
  type DeadLetterStage,
  type ProducedMessage,
  type SourceRecord,
} from '../../runtime/engine/dead-letter.ts';
import { BatchTrace, tracingActive } from '../../runtime/observability/tracing.ts';
import { openClickHouse } from './client.ts';
import {
  ClickHouseWriter,
  isSinkBackpressure,
  type ClickHouseWriterTuning,
  type RejectedRow,
  type Row,
} from './writer.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';
import { compileTranscoder, isDeclaredMapping, type Transcoder } from './transcode.ts';
import { consumerHealth, watchConsumerHealth } from '../../runtime/engine/consumer-health.ts';

/** Where a record came from, for mappings that copy provenance or the Kafka timestamp into the row. */
export interface RecordMeta {
  topic: string;
  partition: number;
  offset: string;
  /** Kafka timestamp, epoch ms as a decimal string. */
  timestamp: string;
  key: Buffer | null;
  /** Full Avro record name, e.g. `agentstreams.fleet.Finding`. */
  recordType: string;
}

/** The rows a record becomes; `null` or `[]` skips the record on purpose (it is not a dead letter). */
export type MappedRows = Row | readonly Row[] | null;

export interface RecordMapping {
  table: string;
  toRows(value: unknown, meta: RecordMeta): MappedRows;
}

/**
 * A mapping for one record type. The serde has already checked the value against its writer schema and the record
 * type chose this mapping, so `T` is what the schema says.
 */
export function mapTo<T>(table: string, toRows: (value: T, meta: RecordMeta) => MappedRows): RecordMapping {
  return { table, toRows: toRows as (value: unknown, meta: RecordMeta) => MappedRows };
}

export interface ClickHouseSinkOptions {
  config: Config;
  /** The connector's name: its consumer group, its client id prefix, and the `processor` in dead-letter headers. */
  name: string;
  topics: readonly string[];
  deadLetterTopic: string;
  /** By full Avro record name. */
  mappings: Readonly<Record<string, RecordMapping>>;
  /** Batch and buffer sizes for the writer (see writer.ts). */
  writer?: ClickHouseWriterTuning;
  /** How often offsets are committed (after a flush); also the longest a row waits. Default 1 s. */
  commitIntervalMs?: number;
  /** How long `stop()` may take to flush and commit before it leaves without committing. Default 30 s. */
  stopTimeoutMs?: number;
  /** Partitions handled in parallel by this member. Default 2. */
  partitionsConsumedConcurrently?: number;
  /** Fetch size per partition; defaults to the configured consumer setting. */
  maxBytesPerPartition?: number;
  /** A client to use instead of one opened from `config` (the sink closes only a client it opened). */
  client?: ClickHouseClient;
  metrics?: Metrics;
  log?: (event: string, fields?: Record<string, unknown>) => void;
  /** This member's id in logs (default: a random one); the process's logger carries the same. */
  instanceId?: string;
  /** Liveness fails when no batch completed for this long while records wait (default `config.health.stallMs`). */
  stallMs?: number;
}

/** What /healthz and /readyz report for a sink member (the same shape as a processor member's). */
export interface SinkHealth {
  /** False once the sink failed or its consumer crashed for good, or no batch completed for `stallMs` while records wait. */
  live: boolean;
  /** Live, joined, not rebalancing and running. */
  ready: boolean;
  problems: string[];
}

export const sinkStates = ['running', 'stopping', 'stopped', 'failed'] as const;
export type SinkState = (typeof sinkStates)[number];

/** Lifecycle: running → stopping → stopped; a fatal error goes running → failed → stopping → stopped. */
const sinkTransitions: Record<SinkState, readonly SinkState[]> = {
  running: ['stopping', 'failed'],
  failed: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

export interface ClickHouseSinkHandle {
  readonly instanceId: string;
  /** Resolves once the member has joined the group and has an assignment (possibly empty). */
  readonly joined: Promise<void>;
  readonly stats: {
    batches: number;
    records: number;
    rowsWritten: number;
    deadLettered: number;
    /** Times a partition was paused because the writer was full. */
    pauses: number;
    checkpoints: number;
    /** Records whose row was transcoded straight from Avro (a `mapColumns` mapping), not decoded and mapped. */
    transcoded: number;
    /** Times a caught-up partition sent the writer's open batches without waiting for them to fill or age. */
    earlySends: number;
    /** Offset commits that succeeded. */
    commits: number;
    /** Rows in successful inserts (re-inserts after a crash count again). */
    readonly rowsInserted: number;
    readonly inserts: number;
  };
  state(): SinkState;
  /** The member's health now (see SinkHealth). */
  health(): SinkHealth;
  /** The fatal error that stopped the sink, if one did. */
  error(): AgentStreamsError | undefined;
  /** Runs a checkpoint now: flush, dead letters, commit. Resolves when it is done. */
  checkpoint(): Promise<void>;
  /** Finishes the batch in hand, flushes, commits and leaves the group, within `stopTimeoutMs`. Idempotent. */
  stop(): Promise<void>;
  /** Leaves without flushing or committing, as a crash would (for tests and chaos drills). Idempotent. */
  abort(): Promise<void>;
}

function problemsOf(options: ClickHouseSinkOptions): string[] {
  const problems: string[] = [];
  if (!/^[A-Za-z0-9._-]+$/.test(options.name))
    problems.push(`name must be a non-empty [A-Za-z0-9._-] string, got "${options.name}"`);
  if (options.topics.length === 0) problems.push('topics must name at least one topic');
  if (options.topics.includes(options.deadLetterTopic))
    problems.push(`deadLetterTopic "${options.deadLetterTopic}" must not be one of the input topics`);
  if (Object.keys(options.mappings).length === 0)
    problems.push('mappings must map at least one record type to a table');
  for (const [name, value] of [
    ['commitIntervalMs', options.commitIntervalMs],
    ['stopTimeoutMs', options.stopTimeoutMs],
    ['partitionsConsumedConcurrently', options.partitionsConsumedConcurrently],
    ['maxBytesPerPartition', options.maxBytesPerPartition],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value > 0))
      problems.push(`${name} must be a positive whole number, got ${value}`);
  }
  return problems;
}

/**
 * Starts the sink as a consumer-group member: validates the options, connects (the writer, the dead-letter topic and
 * producer, metrics), subscribes and runs. The returned handle checkpoints, reports health and stops it.
 */
export async function runClickHouseSink(options: ClickHouseSinkOptions): Promise<ClickHouseSinkHandle> {
  const sink = new ClickHouseSinkMember(options);
  await sink.connect();
  await sink.subscribe();
  return sink;
}

type PendingOffset = { topic: string; partition: number; offset: string };

/**
 * One running sink member, step by step: `connect` (the writer, the dead-letter topic and its producer, the buffer
 * gauges and lag monitor), `subscribe` (join the group, run, checkpoint every `commitIntervalMs`), per batch
 * `onBatch` (`writeRecord` each record: decode, map, buffer, or dead-letter), `commit` (one checkpoint: flush, dead
 * letters, offsets) and `shutdown` (drain, last checkpoint, close).
 */
class ClickHouseSinkMember implements ClickHouseSinkHandle {
  readonly instanceId: string;
  readonly joined: Promise<void>;
  readonly stats: ClickHouseSinkHandle['stats'];

  private readonly config: Config;
  private readonly name: string;
  private readonly topics: readonly string[];
  private readonly deadLetterTopic: string;
  private readonly mappings: Readonly<Record<string, RecordMapping>>;
  private readonly metrics: Metrics | undefined;
  private readonly log: NonNullable<ClickHouseSinkOptions['log']>;
  private readonly commitIntervalMs: number;
  private readonly stopTimeoutMs: number;
  private readonly stallMs: number;
  private readonly transient = retry({ initialMs: 100, maxMs: 5_000 });
  private readonly shutdownSignal = new AbortController();
  private current: SinkState = 'running';
  private failure: AgentStreamsError | undefined;
  private readonly healthState = consumerHealth();
  private readonly pendingDeadLetters: ProducedMessage[] = [];
  private readonly client: ClickHouseClient;
  private readonly kafka: ReturnType<typeof kafkaClient>;
  private readonly serde: AvroSerde;
  private readonly registry: ReturnType<typeof registryClient>;
  /** By writer schema id: the transcoder of a declared mapping's record type, or undefined (generic path). */
  private readonly transcoders = new Map<number, { table: string; transcode: Transcoder } | undefined>();
  private readonly producer: KafkaProducer;
  private readonly consumer: KafkaConsumer;
  private writer!: ClickHouseWriter<SourceRecord>;
  private stopSampling: Array<() => void> = [];
  private lagAdmin: ReturnType<ReturnType<typeof kafkaClient>['admin']> | undefined;
  private lagMonitor: LagMonitor | undefined;
  /** Next offset to commit per `topic:partition`: every record below it is in ClickHouse's buffer or a dead letter. */
  private readonly pending = new Map<string, PendingOffset>();
  private readonly committed = new Map<string, string>();
  private readonly resumeTimers = new Map<string, NodeJS.Timeout>();
  private readonly inflight = new Set<Promise<void>>();
  private resolveJoined: () => void = () => {};
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: ClickHouseSinkOptions) {
    const problems = problemsOf(options);
    if (problems.length > 0) {
      throw new AgentStreamsError(
        ErrorCode.SINK_OPTIONS_INVALID,
        `Invalid ClickHouse sink options: ${problems.join('; ')}.`,
        { details: { problems } },
      );
    }
    const { config, name } = options;
    this.config = config;
    this.name = name;
    this.topics = options.topics;
    this.deadLetterTopic = options.deadLetterTopic;
    this.mappings = options.mappings;
    this.metrics = options.metrics;
    this.log = options.log ?? (() => {});
    this.instanceId = options.instanceId ?? randomUUID().slice(0, 8);
    this.commitIntervalMs = options.commitIntervalMs ?? 1_000;
    this.stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
    this.stallMs = options.stallMs ?? config.health.stallMs;
    this.joined = new Promise<void>((resolve) => (this.resolveJoined = resolve));
    const writer = (): ClickHouseWriter<SourceRecord> => this.writer;
    this.stats = {
      batches: 0,
      records: 0,
      rowsWritten: 0,
      deadLettered: 0,
      pauses: 0,
      checkpoints: 0,
      transcoded: 0,
      earlySends: 0,
      commits: 0,
      get rowsInserted(): number {
        return writer().stats.rowsInserted;
      },
      get inserts(): number {
        return writer().stats.inserts;
      },
    };
    this.client = options.client ?? openClickHouse(config, { role: 'sink' });
    this.kafka = kafkaClient(config, `${name}-${this.instanceId}`);
    this.registry = registryClient(config);
    this.serde = new AvroSerde(this.registry);
    this.producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 10 } });
    this.consumer = this.kafka.consumer({
      groupId: name,
      readUncommitted: false,
      sessionTimeout: config.consumer.sessionTimeoutMs,
      heartbeatInterval: 1_000,
      rebalanceTimeout: 30_000,
      maxBytesPerPartition: options.maxBytesPerPartition ?? config.consumer.maxBytesPerPartition,
      maxWaitTimeInMs: 100,
      retry: { retries: 10 },
    });
  }

  /** Step 1: the writer (its tables checked), the dead-letter topic and producer, the buffer gauges and the lag monitor. */
  async connect(): Promise<void> {
    const { config, name, topics, deadLetterTopic, metrics, log, kafka } = this;
    const writer = await ClickHouseWriter.open<SourceRecord>({
      ...this.options.writer,
      client: this.client,
      tables: [...new Set(Object.values(this.mappings).map((m) => m.table))],
      metrics,
      log,
      onRejected: (_table: string, rows: ReadonlyArray<RejectedRow<SourceRecord>>) => {
        for (const row of rows) if (row.tag) this.toDeadLetter('process', row.tag, row.error);
      },
    });
    this.writer = writer;
    for (const [recordType, mapping] of Object.entries(this.mappings)) {
      if (!isDeclaredMapping(mapping)) continue;
      const columns = writer.columnsOf(mapping.table).map((c) => c.name);
      const declared = Object.keys(mapping.columns);
      const missing = columns.filter((c) => !declared.includes(c));
      const unknown = declared.filter((c) => !columns.includes(c));
      if (missing.length > 0 || unknown.length > 0) {
        writer.abort();
        if (!this.options.client) await this.client.close().catch(() => undefined);
        throw new AgentStreamsError(
          ErrorCode.SINK_OPTIONS_INVALID,
          `The column mapping of ${recordType} does not match table "${mapping.table}": ${[
            missing.length > 0 ? `it misses column(s) ${missing.join(', ')}` : '',
            unknown.length > 0 ? `the table has no column(s) ${unknown.join(', ')}` : '',
          ]
            .filter(Boolean)
            .join('; ')}.`,
          { details: { recordType, table: mapping.table, missing, unknown } },
        );
      }
    }
    const admin = kafka.admin();
    await admin.connect();
    try {
      await withRetry(
        async () => {
          if (!(await admin.listTopics()).includes(deadLetterTopic)) {
            await admin.createTopics({ waitForLeaders: true, topics: [{ topic: deadLetterTopic, numPartitions: 1 }] });
          }
        },
        retry({ initialMs: 100, maxMs: 2_000, maxAttempts: 10 }),
        {
          // A busy broker can answer "does not host this topic-partition" for a topic it has just created while
          // kafkajs waits for its leaders; kafkajs does not retry that, so the creation is checked again here.
          isRetriable: (error) => (error as { retriable?: boolean }).retriable === true,
          onRetry: (error) => log('sink.dead-letter-topic-retry', { message: (error as Error).message }),
        },
      );
    } finally {
      await admin.disconnect();
    }
    await this.producer.connect();
    if (metrics) {
      this.stopSampling = [
        metrics.sinkBufferedRows.sampleWith(() =>
          metrics.sinkBufferedRows.set({ processor: name }, writer.buffered.rows),
        ),
        metrics.sinkBufferedBytes.sampleWith(() =>
          metrics.sinkBufferedBytes.set({ processor: name }, writer.buffered.bytes),
        ),
      ];
      this.lagAdmin = kafka.admin();
      await this.lagAdmin.connect();
      this.lagMonitor = startLagMonitor({
        admin: this.lagAdmin,
        groupId: name,
        topics,
        processor: name,
        metrics,
        intervalMs: config.metrics.lagIntervalMs,
        log,
      });
    }
  }

  /** Step 2: join the group and run (batches go to `onBatch`), and checkpoint every `commitIntervalMs`. */
  async subscribe(): Promise<void> {
    const { consumer, topics, name, log } = this;
    watchConsumerHealth(consumer, this.healthState, log, (assignment) => {
      const mine = new Set(topics.flatMap((topic) => (assignment[topic] ?? []).map((p) => `${topic}:${p}`)));
      this.metrics?.rebalances.inc({ processor: name });
      log('group.join', { partitions: [...mine].sort() });
      // Offsets of partitions another member now owns are theirs to commit.
      for (const key of [...this.pending.keys()]) if (!mine.has(key)) this.pending.delete(key);
      for (const key of [...this.committed.keys()]) if (!mine.has(key)) this.committed.delete(key);
      this.resolveJoined();
    });

    await consumer.connect();
    for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently ?? 2,
      eachBatch: async (payload) => {
        const job = this.onBatch(payload);
        this.inflight.add(job);
        try {
          await job;
        } catch (error) {
          if (
            this.current === 'running' &&
            isAgentStreamsError(error) &&
            (error.code === ErrorCode.SINK_INSERT_FAILED || error.code === ErrorCode.SINK_CLOSED)
          )
            this.fail(error);
          else
            log('batch.error', {
              topic: payload.batch.topic,
              partition: payload.batch.partition,
              offset: payload.batch.firstOffset(),
              lastOffset: payload.batch.lastOffset(),
              message: (error as Error).message,
            });
          // kafkajs fetches again from the last resolved offset: nothing after it was acknowledged.
          throw error;
        } finally {
          this.inflight.delete(job);
        }
      },
    });

    this.timer = setInterval(() => {
      if (this.current !== 'running') return;
      this.commit().catch((error: unknown) => {
        if (isAgentStreamsError(error, ErrorCode.SINK_INSERT_FAILED)) this.fail(error);
        else log('sink.checkpoint-failed', { message: (error as Error).message });
      });
    }, this.commitIntervalMs);
    this.timer.unref();
  }

  state(): SinkState {
    return this.current;
  }

  health(): SinkHealth {
    const { current: state, failure, healthState: health, stallMs } = this;
    const problems: string[] = [];
    if (state === 'failed' || (state !== 'running' && failure))
      problems.push(`the sink failed: ${failure?.message ?? 'unknown error'}`);
    if (health.crashed !== undefined) problems.push(`the consumer crashed and will not restart: ${health.crashed}`);
    const idleMs = Date.now() - health.lastProgress;
    if (state === 'running' && health.lag > 0 && idleMs > stallMs)
      problems.push(`no batch completed for ${Math.round(idleMs / 1000)} s while ${health.lag} records wait`);
    const live = problems.length === 0;
    if (!health.joined) problems.push('not joined to the group yet');
    if (health.rebalancing) problems.push('rebalancing');
    if (state !== 'running' && !failure) problems.push(state);
    return { live, ready: live && state === 'running' && health.joined && !health.rebalancing, problems };
  }

  error(): AgentStreamsError | undefined {
    return this.failure;
  }

  checkpoint(): Promise<void> {
    if (this.current !== 'running')
      return Promise.reject(
        new AgentStreamsError(ErrorCode.SINK_CLOSED, `ClickHouse sink "${this.name}" is ${this.current}.`),
      );
    return this.commit();
  }

  stop(): Promise<void> {
    return this.shutdown('graceful');
  }

  abort(): Promise<void> {
    return this.shutdown('abort');
  }

  private transition(to: SinkState): void {
    if (!sinkTransitions[this.current].includes(to))
      throw new AgentStreamsError(ErrorCode.USAGE, `ClickHouse sink cannot go from ${this.current} to ${to}.`);
    this.current = to;
  }

  private toDeadLetter(stage: DeadLetterStage, source: SourceRecord, error: unknown, traced?: BatchTrace): void {
    const letter = deadLetter(this.deadLetterTopic, this.name, stage, source, error);
    if (traced) letter.headers = traced.stamp(letter.headers, source.offset);
    this.pendingDeadLetters.push(letter);
    this.log('record.dead-lettered', deadLetterLogFields(letter));
    this.stats.deadLettered += 1;
    this.metrics?.recordsDeadLettered.inc({
      processor: this.name,
      topic: source.topic,
      partition: String(source.partition),
    });
    // Dead letters wait for the next checkpoint; when nearly everything is bad, do not let them pile up.
    if (this.pendingDeadLetters.length >= 10_000) void this.commit().catch(() => undefined);
  }

  private fail(error: unknown): void {
    if (this.current !== 'running') return;
    const failure = isAgentStreamsError(error)
      ? error
      : new AgentStreamsError(
          ErrorCode.SINK_INSERT_FAILED,
          `ClickHouse sink "${this.name}" failed: ${(error as Error).message}`,
          { cause: error },
        );
    this.failure = failure;
    this.log('sink.failed', { code: failure.code, message: failure.message });
    this.transition('failed');
    // Offsets stay where the last checkpoint left them; on restart the records come again.
    void this.shutdown('abort');
  }

  private pausePartition(topic: string, partition: number, pause: () => () => void, retryAfterMs: number): void {
    const key = `${topic}:${partition}`;
    this.stats.pauses += 1;
    const resume = pause();
    if (this.resumeTimers.has(key)) return;
    const timer = setTimeout(() => {
      this.resumeTimers.delete(key);
      if (this.current === 'running') resume();
    }, retryAfterMs);
    this.resumeTimers.set(key, timer);
  }

  /** One fetched batch of one partition: each record written (or dead-lettered) until the writer is full; its offset noted. */
  private async onBatch(payload: EachBatchPayload): Promise<void> {
    const { name, stats, metrics } = this;
    const health = this.healthState;
    const { batch, resolveOffset, heartbeat, pause, isRunning, isStale } = payload;
    if (batch.messages.length === 0 || this.current !== 'running') return;
    health.lag = Number(batch.offsetLag()) + batch.messages.length;
    const started = performance.now();
    const values = batch.messages.map((m) => m.value);
    await withRetry(() => this.resolveSchemas(values), this.transient, {
      signal: this.shutdownSignal.signal,
      onRetry: (error) => {
        this.log('registry.retry', { message: (error as Error).message });
        void heartbeat().catch(() => undefined);
      },
    });
    let done: string | undefined;
    let count = 0;
    let paused = false;
    // Traced (when on): a batch span linked to the records' producers and a span per sampled record, so each row's
    // arrival is the last hop of its record's trace (docs/tracing.md). Spans of a batch that throws are not exported.
    const traced = tracingActive()
      ? new BatchTrace(batch.messages, { topic: batch.topic, partition: batch.partition, group: name })
      : undefined;
    for (let i = 0; i < batch.messages.length; i += 1) {
      const message = batch.messages[i]!;
      // isStale() walks kafkajs's seek table: cheap once, not 300k times a second.
      if (!isRunning() || this.current !== 'running' || ((i & 1023) === 0 && isStale())) break;
      const source: SourceRecord = {
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        timestamp: message.timestamp,
        key: message.key,
        value: message.value,
        headers: message.headers as Record<string, Buffer | string | undefined>,
      };
      const written = this.writeRecord(source, pause, traced);
      if (written === 'backpressure') {
        paused = true;
        break;
      }
      done = message.offset;
      count = i + 1;
    }
    traced?.end();
    // A seek (rebalance) since: these offsets are no longer ours to note. The rows stay; they are idempotent.
    if (done === undefined || isStale()) return;
    const all = !paused && done === batch.messages[batch.messages.length - 1]!.offset;
    // resolveOffset of the last message also covers trailing transaction markers (kafkajs maps it to lastOffset).
    resolveOffset(done);
    const next = String(Number(all ? batch.lastOffset() : done) + 1);
    this.pending.set(`${batch.topic}:${batch.partition}`, {
      topic: batch.topic,
      partition: batch.partition,
      offset: next,
    });
    // Caught up (nothing was behind this batch when it was fetched): more rows are not coming soon, so the open
    // batches go now rather than after maxBatchAgeMs, if they are big enough to be worth an insert.
    if (all && batch.offsetLag() === '0' && this.writer.sendEarly()) stats.earlySends += 1;
    stats.batches += 1;
    stats.records += count;
    health.lastProgress = Date.now();
    health.lag = Number(batch.offsetLag()) + batch.messages.length - count;
    const labels = { processor: name, topic: batch.topic, partition: String(batch.partition) };
    metrics?.recordsConsumed.inc(labels, count);
    metrics?.batchDuration.observe({ processor: name }, (performance.now() - started) / 1000);
  }

  /** Fetches the schemas of the batch's records not seen yet, and compiles the transcoders of declared mappings. */
  private async resolveSchemas(values: ReadonlyArray<Buffer | null>): Promise<void> {
    await this.serde.resolve(values);
    const fresh = new Map<number, Buffer>();
    for (const value of values) {
      if (!value || value.length < 5 || value[0] !== 0) continue;
      const id = value.readInt32BE(1);
      if (!this.transcoders.has(id)) fresh.set(id, value);
    }
    for (const [id, value] of fresh) {
      let recordType: string;
      try {
        recordType = this.serde.recordTypeOf(value);
      } catch {
        continue; // an id the registry does not know: decoding dead-letters its records
      }
      const mapping = this.mappings[recordType];
      if (!mapping || !isDeclaredMapping(mapping)) {
        this.transcoders.set(id, undefined);
        continue;
      }
      let found: { schema: string; schemaType?: string; references?: unknown[] };
      try {
        // The schema's text (as the serde reads it): the range rules are custom attributes, which avsc drops.
        const origin = this.registry as unknown as {
          getSchemaOriginRequest(id: number): Promise<{ data(): typeof found }>;
        };
        found = (await origin.getSchemaOriginRequest(id)).data();
      } catch (error) {
        throw new AgentStreamsError(
          ErrorCode.REGISTRY_UNAVAILABLE,
          `Schema registry lookup of id ${id} failed: ${(error as Error).message}`,
          { retriable: true, cause: error },
        );
      }
      const transcode =
        (found.schemaType ?? 'AVRO') === 'AVRO' && !found.references?.length
          ? compileTranscoder(JSON.parse(found.schema), recordType, mapping, this.writer.columnsOf(mapping.table))
          : undefined;
      this.transcoders.set(id, transcode && { table: mapping.table, transcode });
      this.log('sink.transcoder', { schemaId: id, recordType, table: mapping.table, compiled: !!transcode });
    }
  }

  /** Decodes, maps and buffers one record; anything wrong with the record itself becomes a dead letter. */
  private writeRecord(
    record: SourceRecord,
    pause: EachBatchPayload['pause'],
    traced: BatchTrace | undefined,
  ): 'written' | 'dead-lettered' | 'backpressure' {
    const { mappings, name } = this;
    // A declared mapping's row straight from the Avro body; a record the transcoder is unsure of goes the generic way.
    const framed = record.value;
    if (this.transcoders.size > 0 && framed && framed.length >= 5 && framed[0] === 0) {
      const fast = this.transcoders.get(framed.readInt32BE(1));
      if (fast) {
        try {
          if (this.writer.writeWith(fast.table, fast.transcode, record, record)) {
            this.stats.rowsWritten += 1;
            this.stats.transcoded += 1;
            return 'written';
          }
        } catch (error) {
          if (!isSinkBackpressure(error)) throw error;
          this.pausePartition(record.topic, record.partition, pause, error.retryAfterMs);
          return 'backpressure';
        }
      }
    }
    let table: string;
    let rows: readonly Row[];
    let recordType: string;
    let value: unknown;
    try {
      ({ recordType, value } = this.serde.decodeResolved(record.value));
    } catch (error) {
      this.toDeadLetter('deserialize', record, error, traced);
      return 'dead-lettered';
    }
    const mapping = mappings[recordType];
    if (!mapping) {
      this.toDeadLetter(
        'route',
        record,
        new AgentStreamsError(
          ErrorCode.NO_ROUTE,
          `Sink "${name}" has no mapping for record type ${recordType}; it maps ${Object.keys(mappings).join(', ')}.`,
        ),
        traced,
      );
      return 'dead-lettered';
    }
    try {
      const mapped = mapping.toRows(value, {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key,
        recordType,
      });
      rows = mapped === null ? [] : Array.isArray(mapped) ? (mapped as readonly Row[]) : [mapped as Row];
      table = mapping.table;
    } catch (error) {
      this.toDeadLetter('process', record, error, traced);
      return 'dead-lettered';
    }
    try {
      this.writer.write(table, rows, record);
      this.stats.rowsWritten += rows.length;
      return 'written';
    } catch (error) {
      if (isSinkBackpressure(error)) {
        this.pausePartition(record.topic, record.partition, pause, error.retryAfterMs);
        return 'backpressure';
      }
      if (isAgentStreamsError(error, ErrorCode.SINK_ROW_INVALID)) {
        this.toDeadLetter('process', record, error, traced);
        return 'dead-lettered';
      }
      throw error;
    }
  }

  /** One checkpoint at a time; a request while one runs joins it. */
  private commit(): Promise<void> {
    this.running ??= this.runCheckpoint().finally(() => (this.running = undefined));
    return this.running;
  }

  /** A checkpoint: note the offsets reached, flush the writer, produce the dead letters, then commit the noted offsets. */
  private async runCheckpoint(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.current === 'stopped') return;
    const { pending, committed, pendingDeadLetters, stats } = this;
    // Noted before the flush: every record below these offsets has its rows in the writer already.
    const offsets = [...pending.entries()]
      .filter(([key, p]) => committed.get(key) !== p.offset)
      .map(([key, p]) => ({ key, ...p }));
    await this.writer.flush();
    const letters = pendingDeadLetters.splice(0);
    if (letters.length > 0) {
      await withRetry(
        () =>
          this.producer.send({
            topic: this.deadLetterTopic,
            acks: -1,
            messages: letters.map(({ key, value, timestamp, headers }) => ({
              key,
              value,
              ...(timestamp === undefined ? {} : { timestamp }),
              ...(headers ? { headers } : {}),
            })),
          }),
        this.transient,
        { isRetriable: () => true, signal: this.shutdownSignal.signal },
      ).catch((error: unknown) => {
        // Not sent: put them back so the next checkpoint tries again, and do not commit past them.
        pendingDeadLetters.unshift(...letters);
        throw error;
      });
    }
    stats.checkpoints += 1;
    if (offsets.length === 0) return;
    try {
      await this.consumer.commitOffsets(offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })));
      for (const o of offsets) committed.set(o.key, o.offset);
      stats.commits += 1;
    } catch (error) {
      // A rebalance or coordinator move: the rows are in ClickHouse, so whoever reads these records again only
      // re-inserts rows FINAL already collapses. The next checkpoint commits again.
      this.log('sink.commit-failed', {
        offsets: offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })),
        message: (error as Error).message,
      });
    }
  }

  /** The last step: drain (graceful: finish the batches in hand, a last checkpoint, within `stopTimeoutMs`) and close. */
  private shutdown(mode: 'graceful' | 'abort'): Promise<void> {
    this.stopping ??= (async () => {
      const { consumer, topics, inflight, stopTimeoutMs, writer, log } = this;
      const wasFailed = this.current === 'failed';
      this.transition('stopping');
      clearInterval(this.timer);
      this.lagMonitor?.stop();
      for (const stop of this.stopSampling) stop();
      for (const t of this.resumeTimers.values()) clearTimeout(t);
      this.resumeTimers.clear();
      if (mode === 'graceful' && !wasFailed) {
        // No new batches; the ones in hand finish writing, then one last checkpoint commits them.
        consumer.pause(topics.map((topic) => ({ topic })));
        // A batch stuck on a dependency (a registry that does not answer is retried without end) must not hold the
        // shutdown past its deadline: its retries are stopped, and what it did not write is read again by the next owner.
        const settled = await Promise.race([
          Promise.allSettled([...inflight]).then(() => true),
          sleep(stopTimeoutMs, false, { ref: false }),
        ]);
        if (!settled) {
          log('sink.stop-batch-timeout', { stopTimeoutMs, batches: inflight.size });
          this.shutdownSignal.abort();
        }
        const committedInTime = await Promise.race([
          (async () => {
            await this.running?.catch(() => undefined);
            await this.runCheckpoint();
            return true;
          })().catch((error: unknown) => {
            log('sink.stop-checkpoint-failed', { message: (error as Error).message });
            return false;
          }),
          sleep(stopTimeoutMs, false, { ref: false }),
        ]);
        if (committedInTime) await writer.close().catch(() => undefined);
        else log('sink.stop-timeout', { stopTimeoutMs });
      }
      // Whatever was not committed is read again by the next owner; dropping it here loses nothing.
      this.shutdownSignal.abort();
      writer.abort();
      await consumer.stop().catch(() => undefined);
      await consumer.disconnect().catch(() => undefined);
      await this.producer.disconnect().catch(() => undefined);
      await this.lagAdmin?.disconnect().catch(() => undefined);
      if (!this.options.client) await this.client.close().catch(() => undefined);
      this.transition('stopped');
    })();
    return this.stopping;
  }
}
