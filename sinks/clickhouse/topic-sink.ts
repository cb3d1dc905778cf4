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
import { type Consumer, type EachBatchPayload, type Producer } from 'kafkajs';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Config } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode, isAgentStreamsError } from '../../runtime/errors.ts';
import { retry, withRetry } from '../../runtime/retry.ts';
import type { Metrics } from '../../runtime/observability/metrics.ts';
import { startLagMonitor, type LagMonitor } from '../../runtime/observability/lag.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { deadLetter, deadLetterLogFields, type DeadLetterStage, type ProducedMessage, type SourceRecord } from '../../runtime/engine/dead-letter.ts';
import { BatchTrace, tracingActive } from '../../runtime/observability/tracing.ts';
import { openClickHouse } from './client.ts';
import { ClickHouseWriter, isSinkBackpressure, type ClickHouseWriterTuning, type RejectedRow, type Row } from './writer.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';
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

const sinkStates = ['running', 'stopping', 'stopped', 'failed'] as const;
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
  if (!/^[A-Za-z0-9._-]+$/.test(options.name)) problems.push(`name must be a non-empty [A-Za-z0-9._-] string, got "${options.name}"`);
  if (options.topics.length === 0) problems.push('topics must name at least one topic');
  if (options.topics.includes(options.deadLetterTopic)) problems.push(`deadLetterTopic "${options.deadLetterTopic}" must not be one of the input topics`);
  if (Object.keys(options.mappings).length === 0) problems.push('mappings must map at least one record type to a table');
  for (const [name, value] of [
    ['commitIntervalMs', options.commitIntervalMs],
    ['stopTimeoutMs', options.stopTimeoutMs],
    ['partitionsConsumedConcurrently', options.partitionsConsumedConcurrently],
    ['maxBytesPerPartition', options.maxBytesPerPartition],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value > 0)) problems.push(`${name} must be a positive whole number, got ${value}`);
  }
  return problems;
}

export async function runClickHouseSink(options: ClickHouseSinkOptions): Promise<ClickHouseSinkHandle> {
  const problems = problemsOf(options);
  if (problems.length > 0) {
    throw new AgentStreamsError(ErrorCode.SINK_OPTIONS_INVALID, `Invalid ClickHouse sink options: ${problems.join('; ')}.`, { details: { problems } });
  }
  const { config, name, topics, deadLetterTopic, mappings } = options;
  const log = options.log ?? (() => {});
  const instanceId = options.instanceId ?? randomUUID().slice(0, 8);
  const commitIntervalMs = options.commitIntervalMs ?? 1_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 30_000;
  const transient = retry({ initialMs: 100, maxMs: 5_000 });
  const shutdownSignal = new AbortController();
  let state: SinkState = 'running';
  let failure: AgentStreamsError | undefined;
  const health = consumerHealth();
  const stallMs = options.stallMs ?? config.health.stallMs;
  const transition = (to: SinkState): void => {
    if (!sinkTransitions[state].includes(to)) throw new AgentStreamsError(ErrorCode.USAGE, `ClickHouse sink cannot go from ${state} to ${to}.`);
    state = to;
  };

  const pendingDeadLetters: ProducedMessage[] = [];
  const toDeadLetter = (stage: DeadLetterStage, source: SourceRecord, error: unknown, traced?: BatchTrace): void => {
    const letter = deadLetter(deadLetterTopic, name, stage, source, error);
    if (traced) letter.headers = traced.stamp(letter.headers, source.offset);
    pendingDeadLetters.push(letter);
    log('record.dead-lettered', deadLetterLogFields(letter));
    stats.deadLettered += 1;
    options.metrics?.recordsDeadLettered.inc({ processor: name, topic: source.topic, partition: String(source.partition) });
    // Dead letters wait for the next checkpoint; when nearly everything is bad, do not let them pile up.
    if (pendingDeadLetters.length >= 10_000) void checkpoint().catch(() => undefined);
  };

  const client = options.client ?? openClickHouse(config, { role: 'sink' });
  const writer = await ClickHouseWriter.open<SourceRecord>({
    ...options.writer,
    client,
    tables: [...new Set(Object.values(mappings).map((m) => m.table))],
    metrics: options.metrics,
    log,
    onRejected: (_table: string, rows: ReadonlyArray<RejectedRow<SourceRecord>>) => {
      for (const row of rows) if (row.tag) toDeadLetter('process', row.tag, row.error);
    },
  });

  const kafka = kafkaClient(config, `${name}-${instanceId}`);
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(deadLetterTopic)) {
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: deadLetterTopic, numPartitions: 1 }] });
    }
  } finally {
    await admin.disconnect();
  }
  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 10 } });
  await producer.connect();
  const metrics = options.metrics;
  const stopSampling = metrics
    ? [
        metrics.sinkBufferedRows.sampleWith(() => metrics.sinkBufferedRows.set({ processor: name }, writer.buffered.rows)),
        metrics.sinkBufferedBytes.sampleWith(() => metrics.sinkBufferedBytes.set({ processor: name }, writer.buffered.bytes)),
      ]
    : [];
  let lagAdmin: ReturnType<typeof kafka.admin> | undefined;
  let lagMonitor: LagMonitor | undefined;
  if (metrics) {
    lagAdmin = kafka.admin();
    await lagAdmin.connect();
    lagMonitor = startLagMonitor({ admin: lagAdmin, groupId: name, topics, processor: name, metrics, intervalMs: config.metrics.lagIntervalMs, log });
  }
  const serde = new AvroSerde(registryClient(config));

  const stats = {
    batches: 0,
    records: 0,
    rowsWritten: 0,
    deadLettered: 0,
    pauses: 0,
    checkpoints: 0,
    commits: 0,
    get rowsInserted(): number {
      return writer.stats.rowsInserted;
    },
    get inserts(): number {
      return writer.stats.inserts;
    },
  };

  /** Next offset to commit per `topic:partition`: every record below it is in ClickHouse's buffer or a dead letter. */
  const pending = new Map<string, { topic: string; partition: number; offset: string }>();
  const committed = new Map<string, string>();
  const resumeTimers = new Map<string, NodeJS.Timeout>();
  const inflight = new Set<Promise<void>>();

  const consumer: Consumer = kafka.consumer({
    groupId: name,
    readUncommitted: false,
    sessionTimeout: config.consumer.sessionTimeoutMs,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 30_000,
    maxBytesPerPartition: options.maxBytesPerPartition ?? config.consumer.maxBytesPerPartition,
    maxWaitTimeInMs: 100,
    retry: { retries: 10 },
  });

  function fail(error: unknown): void {
    if (state !== 'running') return;
    failure = isAgentStreamsError(error)
      ? error
      : new AgentStreamsError(ErrorCode.SINK_INSERT_FAILED, `ClickHouse sink "${name}" failed: ${(error as Error).message}`, { cause: error });
    log('sink.failed', { code: failure.code, message: failure.message });
    transition('failed');
    // Offsets stay where the last checkpoint left them; on restart the records come again.
    void shutdown('abort');
  }

  function pausePartition(topic: string, partition: number, pause: () => () => void, retryAfterMs: number): void {
    const key = `${topic}:${partition}`;
    stats.pauses += 1;
    const resume = pause();
    if (resumeTimers.has(key)) return;
    const timer = setTimeout(() => {
      resumeTimers.delete(key);
      if (state === 'running') resume();
    }, retryAfterMs);
    resumeTimers.set(key, timer);
  }

  async function handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, pause, isRunning, isStale } = payload;
    if (batch.messages.length === 0 || state !== 'running') return;
    health.lag = Number(batch.offsetLag()) + batch.messages.length;
    const started = performance.now();
    await withRetry(() => serde.resolve(batch.messages.map((m) => m.value)), transient, {
      signal: shutdownSignal.signal,
      onRetry: (error) => {
        log('registry.retry', { message: (error as Error).message });
        void heartbeat().catch(() => undefined);
      },
    });
    let done: string | undefined;
    let paused = false;
    // Traced (when on): a batch span linked to the records' producers and a span per sampled record, so each row's
    // arrival is the last hop of its record's trace (docs/tracing.md). Spans of a batch that throws are not exported.
    const traced = tracingActive() ? new BatchTrace(batch.messages, { topic: batch.topic, partition: batch.partition, group: name }) : undefined;
    for (let i = 0; i < batch.messages.length; i += 1) {
      const message = batch.messages[i]!;
      // isStale() walks kafkajs's seek table: cheap once, not 300k times a second.
      if (!isRunning() || state !== 'running' || ((i & 1023) === 0 && isStale())) break;
      const source: SourceRecord = {
        topic: batch.topic,
        partition: batch.partition,
        offset: message.offset,
        timestamp: message.timestamp,
        key: message.key,
        value: message.value,
        headers: message.headers as Record<string, Buffer | string | undefined>,
      };
      const written = writeRecord(source);
      if (written === 'backpressure') {
        paused = true;
        break;
      }
      done = message.offset;
    }
    traced?.end();
    // A seek (rebalance) since: these offsets are no longer ours to note. The rows stay; they are idempotent.
    if (done === undefined || isStale()) return;
    const all = !paused && done === batch.messages[batch.messages.length - 1]!.offset;
    // resolveOffset of the last message also covers trailing transaction markers (kafkajs maps it to lastOffset).
    resolveOffset(done);
    const next = String(Number(all ? batch.lastOffset() : done) + 1);
    pending.set(`${batch.topic}:${batch.partition}`, { topic: batch.topic, partition: batch.partition, offset: next });
    const count = batch.messages.findIndex((m) => m.offset === done) + 1;
    stats.batches += 1;
    stats.records += count;
    health.lastProgress = Date.now();
    health.lag = Number(batch.offsetLag()) + batch.messages.length - count;
    const labels = { processor: name, topic: batch.topic, partition: String(batch.partition) };
    options.metrics?.recordsConsumed.inc(labels, count);
    options.metrics?.batchDuration.observe({ processor: name }, (performance.now() - started) / 1000);

    /** Decodes, maps and buffers one record; anything wrong with the record itself becomes a dead letter. */
    function writeRecord(record: SourceRecord): 'written' | 'dead-lettered' | 'backpressure' {
      let table: string;
      let rows: readonly Row[];
      let recordType: string;
      let value: unknown;
      try {
        ({ recordType, value } = serde.decodeResolved(record.value));
      } catch (error) {
        toDeadLetter('deserialize', record, error, traced);
        return 'dead-lettered';
      }
      const mapping = mappings[recordType];
      if (!mapping) {
        toDeadLetter(
          'route',
          record,
          new AgentStreamsError(ErrorCode.NO_ROUTE, `Sink "${name}" has no mapping for record type ${recordType}; it maps ${Object.keys(mappings).join(', ')}.`),
          traced,
        );
        return 'dead-lettered';
      }
      try {
        const mapped = mapping.toRows(value, { topic: record.topic, partition: record.partition, offset: record.offset, timestamp: record.timestamp, key: record.key, recordType });
        rows = mapped === null ? [] : Array.isArray(mapped) ? (mapped as readonly Row[]) : [mapped as Row];
        table = mapping.table;
      } catch (error) {
        toDeadLetter('process', record, error, traced);
        return 'dead-lettered';
      }
      try {
        writer.write(table, rows, record);
        stats.rowsWritten += rows.length;
        return 'written';
      } catch (error) {
        if (isSinkBackpressure(error)) {
          pausePartition(record.topic, record.partition, pause, error.retryAfterMs);
          return 'backpressure';
        }
        if (isAgentStreamsError(error, ErrorCode.SINK_ROW_INVALID)) {
          toDeadLetter('process', record, error, traced);
          return 'dead-lettered';
        }
        throw error;
      }
    }
  }

  let running: Promise<void> | undefined;
  /** One checkpoint at a time; a request while one runs joins it. */
  function checkpoint(): Promise<void> {
    running ??= runCheckpoint().finally(() => (running = undefined));
    return running;
  }

  async function runCheckpoint(): Promise<void> {
    if (failure) throw failure;
    if (state === 'stopped') return;
    // Noted before the flush: every record below these offsets has its rows in the writer already.
    const offsets = [...pending.entries()].filter(([key, p]) => committed.get(key) !== p.offset).map(([key, p]) => ({ key, ...p }));
    await writer.flush();
    const letters = pendingDeadLetters.splice(0);
    if (letters.length > 0) {
      await withRetry(
        () =>
          producer.send({
            topic: deadLetterTopic,
            acks: -1,
            messages: letters.map(({ key, value, timestamp, headers }) => ({ key, value, ...(timestamp === undefined ? {} : { timestamp }), ...(headers ? { headers } : {}) })),
          }),
        transient,
        { isRetriable: () => true, signal: shutdownSignal.signal },
      ).catch((error: unknown) => {
        // Not sent: put them back so the next checkpoint tries again, and do not commit past them.
        pendingDeadLetters.unshift(...letters);
        throw error;
      });
    }
    stats.checkpoints += 1;
    if (offsets.length === 0) return;
    try {
      await consumer.commitOffsets(offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })));
      for (const o of offsets) committed.set(o.key, o.offset);
      stats.commits += 1;
    } catch (error) {
      // A rebalance or coordinator move: the rows are in ClickHouse, so whoever reads these records again only
      // re-inserts rows FINAL already collapses. The next checkpoint commits again.
      log('sink.commit-failed', { offsets: offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })), message: (error as Error).message });
    }
  }

  let resolveJoined: () => void = () => {};
  const joined = new Promise<void>((resolve) => (resolveJoined = resolve));
  watchConsumerHealth(consumer, health, log, (assignment) => {
    const mine = new Set(topics.flatMap((topic) => (assignment[topic] ?? []).map((p) => `${topic}:${p}`)));
    options.metrics?.rebalances.inc({ processor: name });
    log('group.join', { partitions: [...mine].sort() });
    // Offsets of partitions another member now owns are theirs to commit.
    for (const key of [...pending.keys()]) if (!mine.has(key)) pending.delete(key);
    for (const key of [...committed.keys()]) if (!mine.has(key)) committed.delete(key);
    resolveJoined();
  });

  await consumer.connect();
  for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: options.partitionsConsumedConcurrently ?? 2,
    eachBatch: async (payload) => {
      const job = handleBatch(payload);
      inflight.add(job);
      try {
        await job;
      } catch (error) {
        if (state === 'running' && isAgentStreamsError(error) && (error.code === ErrorCode.SINK_INSERT_FAILED || error.code === ErrorCode.SINK_CLOSED)) fail(error);
        else log('batch.error', { topic: payload.batch.topic, partition: payload.batch.partition, offset: payload.batch.firstOffset(), lastOffset: payload.batch.lastOffset(), message: (error as Error).message });
        // kafkajs fetches again from the last resolved offset: nothing after it was acknowledged.
        throw error;
      } finally {
        inflight.delete(job);
      }
    },
  });

  const timer = setInterval(() => {
    if (state !== 'running') return;
    checkpoint().catch((error: unknown) => {
      if (isAgentStreamsError(error, ErrorCode.SINK_INSERT_FAILED)) fail(error);
      else log('sink.checkpoint-failed', { message: (error as Error).message });
    });
  }, commitIntervalMs);
  timer.unref();

  let stopping: Promise<void> | undefined;
  function shutdown(mode: 'graceful' | 'abort'): Promise<void> {
    stopping ??= (async () => {
      const wasFailed = state === 'failed';
      transition('stopping');
      clearInterval(timer);
      lagMonitor?.stop();
      for (const stop of stopSampling) stop();
      for (const t of resumeTimers.values()) clearTimeout(t);
      resumeTimers.clear();
      if (mode === 'graceful' && !wasFailed) {
        // No new batches; the ones in hand finish writing, then one last checkpoint commits them.
        consumer.pause(topics.map((topic) => ({ topic })));
        // A batch stuck on a dependency (a registry that does not answer is retried without end) must not hold the
        // shutdown past its deadline: its retries are stopped, and what it did not write is read again by the next owner.
        const settled = await Promise.race([Promise.allSettled([...inflight]).then(() => true), sleep(stopTimeoutMs, false, { ref: false })]);
        if (!settled) {
          log('sink.stop-batch-timeout', { stopTimeoutMs, batches: inflight.size });
          shutdownSignal.abort();
        }
        const committedInTime = await Promise.race([
          (async () => {
            await running?.catch(() => undefined);
            await runCheckpoint();
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
      shutdownSignal.abort();
      writer.abort();
      await consumer.stop().catch(() => undefined);
      await consumer.disconnect().catch(() => undefined);
      await producer.disconnect().catch(() => undefined);
      await lagAdmin?.disconnect().catch(() => undefined);
      if (!options.client) await client.close().catch(() => undefined);
      transition('stopped');
    })();
    return stopping;
  }

  return {
    instanceId,
    joined,
    stats,
    state: () => state,
    health(): SinkHealth {
      const problems: string[] = [];
      if (state === 'failed' || (state !== 'running' && failure)) problems.push(`the sink failed: ${failure?.message ?? 'unknown error'}`);
      if (health.crashed !== undefined) problems.push(`the consumer crashed and will not restart: ${health.crashed}`);
      const idleMs = Date.now() - health.lastProgress;
      if (state === 'running' && health.lag > 0 && idleMs > stallMs) problems.push(`no batch completed for ${Math.round(idleMs / 1000)} s while ${health.lag} records wait`);
      const live = problems.length === 0;
      if (!health.joined) problems.push('not joined to the group yet');
      if (health.rebalancing) problems.push('rebalancing');
      if (state !== 'running' && !failure) problems.push(state);
      return { live, ready: live && state === 'running' && health.joined && !health.rebalancing, problems };
    },
    error: () => failure,
    checkpoint: () => {
      if (state !== 'running') return Promise.reject(new AgentStreamsError(ErrorCode.SINK_CLOSED, `ClickHouse sink "${name}" is ${state}.`));
      return checkpoint();
    },
    stop: () => shutdown('graceful'),
    abort: () => shutdown('abort'),
  };
}
