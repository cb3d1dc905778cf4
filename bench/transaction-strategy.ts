/**
 * The transaction strategy, measured (issue 10, item 3): per-partition transactional producers (what
 * runtime/engine/runner.ts does: transactional id `<group>-<partition>`, a transaction per fetched batch) against one
 * transactional producer per member whose offsets carry the consumer's group metadata (KIP-447, Kafka Streams'
 * exactly_once_v2), with and without a commit interval.
 *
 *   npx tsx bench/transaction-strategy.ts [--events 200000] [--rate 5000] [--latency-seconds 20] [--warmup-seconds 5]
 *                                         [--variants 1,2,3,4] [--no-throughput] [--no-latency] [--no-fencing]
 *
 * One process, one run, fresh 6-partition topics, the same pre-produced input for every variant, an exactly-once
 * consume → pass-through → produce pipeline (read_committed), each variant's output verified read_committed (each
 * input record exactly once). Then the fencing that makes one producer per member safe: a zombie member (a child
 * process, frozen with SIGSTOP past its session timeout while a second member takes its partitions and commits them)
 * sends its late offsets and commit, which the group coordinator must refuse. Results: bench/results/txn-strategy-*.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel, type Admin, type EachBatchPayload, type Producer } from 'kafkajs';

const BROKERS = (process.env.AS_KAFKA_BROKERS ?? '127.0.0.1:19092').split(',');
const PARTITIONS = 6;
const RECORD_BYTES = 150;

// ---------------------------------------------------------------------------------------------------------------
// Arguments

interface Options {
  events: number;
  rate: number;
  latencySeconds: number;
  warmupSeconds: number;
  variants: number[];
  throughput: boolean;
  latency: boolean;
  fencing: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    events: 200_000,
    rate: 5_000,
    latencySeconds: 20,
    warmupSeconds: 5,
    variants: [1, 2, 3, 4],
    throughput: true,
    latency: true,
    fencing: true,
  };
  const positive = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} needs a positive integer, got ${String(value)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--events') o.events = positive(arg, argv[++i]);
    else if (arg === '--rate') o.rate = positive(arg, argv[++i]);
    else if (arg === '--latency-seconds') o.latencySeconds = positive(arg, argv[++i]);
    else if (arg === '--warmup-seconds') o.warmupSeconds = positive(arg, argv[++i]);
    else if (arg === '--variants') {
      o.variants = (argv[++i] ?? '').split(',').map((v) => positive(arg, v));
      for (const v of o.variants) if (v > 4) throw new Error(`--variants: ${v} is not one of 1,2,3,4`);
    } else if (arg === '--no-throughput') o.throughput = false;
    else if (arg === '--no-latency') o.latency = false;
    else if (arg === '--no-fencing') o.fencing = false;
    else throw new Error(`unknown argument ${arg} (see the header of bench/transaction-strategy.ts)`);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const now = (): number => performance.timeOrigin + performance.now();

async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const round = (n: number, digits = 1): number => Math.round(n * 10 ** digits) / 10 ** digits;

/** A record's value: its sequence number in the first 8 bytes, padding to RECORD_BYTES. */
function recordValue(seq: number): Buffer {
  const value = Buffer.alloc(RECORD_BYTES, 0x61);
  value.writeBigUInt64BE(BigInt(seq), 0);
  return value;
}
const seqOf = (value: Buffer | null): number => (value ? Number(value.readBigUInt64BE(0)) : -1);

// ---------------------------------------------------------------------------------------------------------------
// The confluent library (optional dependency): only the parts used here.

interface CkMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, unknown>;
}
interface CkBatchPayload {
  batch: { topic: string; partition: number; messages: CkMessage[] };
}
interface CkConsumer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  subscribe(s: { topics: string[] }): Promise<void>;
  run(c: {
    eachBatch: (p: CkBatchPayload) => Promise<void>;
    partitionsConsumedConcurrently: number;
    eachBatchAutoResolve: boolean;
  }): Promise<void>;
  assignment(): Array<{ topic: string; partition: number }>;
}
interface CkTopicOffsets {
  topic: string;
  partitions: Array<{ partition: number; offset: string }>;
}
interface CkProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  transaction(): Promise<unknown>;
  sendBatch(b: {
    topicMessages: Array<{
      topic: string;
      messages: Array<{ partition: number; key: Buffer | null; value: Buffer | null; headers?: unknown }>;
    }>;
  }): Promise<unknown>;
  sendOffsets(a: { consumer: CkConsumer; topics: CkTopicOffsets[] }): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}
interface CkKafka {
  producer(c: Record<string, unknown>): CkProducer;
  consumer(c: Record<string, unknown>): CkConsumer;
}
interface CkLowConsumer {
  connect(o: object | null, cb: (e: Error | null) => void): void;
  disconnect(cb: (e: Error | null) => void): void;
  subscribe(topics: string[]): void;
  consume(
    n: number,
    cb: (e: Error | null, messages: Array<CkMessage & { partition: number; topic: string }>) => void,
  ): void;
  setDefaultConsumeTimeout(ms: number): void;
}
interface CkLowProducer {
  connect(o: object | null, cb: (e: Error | null) => void): void;
  disconnect(timeout: number, cb: (e: Error | null) => void): void;
  initTransactions(timeout: number, cb: (e: Error | null) => void): void;
  beginTransaction(cb: (e: Error | null) => void): void;
  produce(topic: string, partition: number, value: Buffer, key: Buffer | null): void;
  sendOffsetsToTransaction(
    offsets: Array<{ topic: string; partition: number; offset: number }>,
    consumer: CkLowConsumer,
    timeout: number,
    cb: (e: Error | null) => void,
  ): void;
  commitTransaction(timeout: number, cb: (e: Error | null) => void): void;
  abortTransaction(timeout: number, cb: (e: Error | null) => void): void;
  setPollInterval(ms: number): void;
}
interface CkLibrary {
  KafkaJS: { Kafka: new (c: Record<string, unknown>) => CkKafka };
  KafkaConsumer: new (c: Record<string, unknown>, t?: Record<string, unknown>) => CkLowConsumer;
  Producer: new (c: Record<string, unknown>) => CkLowProducer;
}
const ck = (): CkLibrary => createRequire(import.meta.url)('@confluentinc/kafka-javascript') as CkLibrary;
const ckKafka = (): CkKafka =>
  new (ck().KafkaJS.Kafka)({ kafkaJS: { brokers: BROKERS, clientId: 'txn-bench', logLevel: 1 } });
const cb2p = (f: (cb: (e: Error | null) => void) => void): Promise<void> =>
  new Promise((resolve, reject) => f((e) => (e ? reject(e) : resolve())));

/** librdkafka's error, as the demonstration reports it. */
function describeError(error: unknown): Record<string, unknown> {
  const e = error as { message?: string; code?: unknown; type?: string; name?: string; abortable?: boolean };
  return {
    name: e.name,
    code: e.code,
    type: e.type,
    message: e.message,
    ...(e.abortable !== undefined ? { abortable: e.abortable } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The pipelines

type VariantId = 1 | 2 | 3 | 4;
const VARIANTS: Record<VariantId, string> = {
  1: 'kafkajs, per-partition producers, txn per fetched batch (runtime)',
  2: 'confluent, per-partition producers, txn per fetched batch',
  3: 'confluent, one producer per member (KIP-447), txn per fetch',
  4: 'confluent, one producer per member (KIP-447), commit interval 100 ms',
};

interface PipelineStats {
  firstConsumed: number; // epoch ms of the first record handed to the pipeline
  committedRecords: number; // input records whose offsets are committed
  transactions: number;
  commitMs: number[]; // commit() call durations
  txnMs: number[]; // begin → commit done
  allCommittedAt: number;
}

interface Pipeline {
  stats: PipelineStats;
  joined: Promise<void>;
  stop(): Promise<void>;
  error(): Error | undefined;
}

interface Batch {
  partition: number;
  messages: Array<{ key: Buffer | null; value: Buffer | null; headers?: unknown; offset: string }>;
}

function newStats(): PipelineStats {
  return { firstConsumed: 0, committedRecords: 0, transactions: 0, commitMs: [], txnMs: [], allCommittedAt: 0 };
}

function counted(stats: PipelineStats, records: number, expected: number): void {
  stats.committedRecords += records;
  if (expected > 0 && stats.committedRecords >= expected && stats.allCommittedAt === 0) stats.allCommittedAt = now();
}

/** Variant 1: kafkajs, a transactional producer per partition (`<group>-<partition>`), a transaction per batch. */
async function kafkajsPerPartition(kafka: Kafka, group: string, input: string, output: string, expected: number) {
  const stats = newStats();
  let failure: Error | undefined;
  const consumer = kafka.consumer({ groupId: group, readUncommitted: false });
  const producers = new Map<number, Promise<Producer>>();
  const producerFor = (partition: number): Promise<Producer> => {
    let p = producers.get(partition);
    if (!p) {
      const producer = kafka.producer({
        transactionalId: `${group}-${partition}`,
        idempotent: true,
        maxInFlightRequests: 1,
      });
      p = producer.connect().then(() => producer);
      producers.set(partition, p);
    }
    return p;
  };
  let resolveJoined!: () => void;
  const joined = new Promise<void>((resolve) => (resolveJoined = resolve));
  consumer.on(consumer.events.GROUP_JOIN, () => resolveJoined());
  await consumer.connect();
  await consumer.subscribe({ topic: input, fromBeginning: true });
  void consumer
    .run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch, resolveOffset, heartbeat }: EachBatchPayload) => {
        if (batch.messages.length === 0) return;
        if (stats.firstConsumed === 0) stats.firstConsumed = now();
        const producer = await producerFor(batch.partition);
        const begin = now();
        const txn = await producer.transaction();
        try {
          await txn.send({
            topic: output,
            messages: batch.messages.map((m) => ({
              partition: batch.partition,
              key: m.key,
              value: m.value,
              headers: m.headers,
            })),
          });
          const last = batch.messages[batch.messages.length - 1]!.offset;
          await txn.sendOffsets({
            consumerGroupId: group,
            topics: [{ topic: input, partitions: [{ partition: batch.partition, offset: String(BigInt(last) + 1n) }] }],
          });
          const c0 = now();
          await txn.commit();
          stats.commitMs.push(now() - c0);
          stats.txnMs.push(now() - begin);
          stats.transactions += 1;
          resolveOffset(last);
          counted(stats, batch.messages.length, expected);
          await heartbeat();
        } catch (error) {
          failure ??= error as Error;
          await txn.abort().catch(() => undefined);
          throw error;
        }
      },
    })
    .catch((error: Error) => (failure ??= error));
  return {
    stats,
    joined,
    error: () => failure,
    stop: async () => {
      await consumer.disconnect().catch(() => undefined);
      for (const p of producers.values()) await (await p).disconnect().catch(() => undefined);
    },
  } satisfies Pipeline;
}

function ckConsumer(group: string, withRebalanceWatch: { assigned: () => void }): CkConsumer {
  return ckKafka().consumer({
    kafkaJS: { groupId: group, fromBeginning: true, autoCommit: false },
    'isolation.level': 'read_committed',
    'js.consumer.max.batch.size': 5_000, // as the runtime's confluent port
    rebalance_cb: (error: { code: number }) => {
      if (error.code === -175) setImmediate(withRebalanceWatch.assigned);
    },
  });
}

const ckMessages = (batch: Batch, output: string) => ({
  topic: output,
  messages: batch.messages.map((m) => ({ partition: batch.partition, key: m.key, value: m.value, headers: m.headers })),
});

/** Variant 2: the same as 1 on @confluentinc/kafka-javascript's KafkaJS-compatible API. */
async function confluentPerPartition(group: string, input: string, output: string, expected: number) {
  const stats = newStats();
  let failure: Error | undefined;
  let resolveJoined!: () => void;
  const joined = new Promise<void>((resolve) => (resolveJoined = resolve));
  const consumer = ckConsumer(group, { assigned: () => resolveJoined() });
  const producers = new Map<number, Promise<CkProducer>>();
  const producerFor = (partition: number): Promise<CkProducer> => {
    let p = producers.get(partition);
    if (!p) {
      const producer = ckKafka().producer({
        kafkaJS: { transactionalId: `${group}-${partition}`, idempotent: true, maxInFlightRequests: 1 },
      });
      p = producer.connect().then(() => producer);
      producers.set(partition, p);
    }
    return p;
  };
  await consumer.connect();
  await consumer.subscribe({ topics: [input] });
  void consumer
    .run({
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }) => {
        if (batch.messages.length === 0) return;
        if (stats.firstConsumed === 0) stats.firstConsumed = now();
        const producer = await producerFor(batch.partition);
        const begin = now();
        await producer.transaction();
        try {
          await producer.sendBatch({ topicMessages: [ckMessages(batch, output)] });
          const last = batch.messages[batch.messages.length - 1]!.offset;
          await producer.sendOffsets({
            consumer,
            topics: [{ topic: input, partitions: [{ partition: batch.partition, offset: String(BigInt(last) + 1n) }] }],
          });
          const c0 = now();
          await producer.commit();
          stats.commitMs.push(now() - c0);
          stats.txnMs.push(now() - begin);
          stats.transactions += 1;
          counted(stats, batch.messages.length, expected);
        } catch (error) {
          failure ??= error as Error;
          await producer.abort().catch(() => undefined);
          throw error;
        }
      },
    })
    .catch((error: Error) => (failure ??= error));
  return {
    stats,
    joined,
    error: () => failure,
    stop: async () => {
      await consumer.disconnect().catch(() => undefined);
      for (const p of producers.values()) await (await p).disconnect().catch(() => undefined);
    },
  } satisfies Pipeline;
}

/**
 * Variants 3 and 4: one transactional producer per member. The batches the consumer hands over (one per partition,
 * up to 6 at once) are gathered and committed together in one transaction whose offsets carry the consumer's group
 * metadata (`sendOffsets({ consumer })`, KIP-447). Interval 0: a transaction as soon as the previous one is done,
 * holding every batch that arrived meanwhile, and the batch waits for it (a transaction per fetch). Interval T: the
 * batch returns at once (the consumer fetches ahead) and a transaction commits what was gathered T after its first
 * batch; a batch waits only when more than MAX_GATHERED records are pending.
 */
async function confluentPerMember(group: string, input: string, output: string, expected: number, intervalMs: number) {
  const MAX_GATHERED = 50_000; // the runtime's AS_COMMIT_MAX_RECORDS default
  const stats = newStats();
  let failure: Error | undefined;
  let resolveJoined!: () => void;
  const joined = new Promise<void>((resolve) => (resolveJoined = resolve));
  const consumer = ckConsumer(group, { assigned: () => resolveJoined() });
  const producer = ckKafka().producer({
    kafkaJS: { transactionalId: `${group}-member-1`, idempotent: true, maxInFlightRequests: 1 },
  });
  await producer.connect();

  let pending: Batch[] = [];
  let pendingRecords = 0;
  let pendingSince = 0;
  let waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  let running = false;
  let timer: ReturnType<typeof setTimeout> | undefined;

  const commitGathered = async (): Promise<void> => {
    running = true;
    const batches = pending;
    const these = waiters;
    const records = pendingRecords;
    pending = [];
    waiters = [];
    pendingRecords = 0;
    try {
      const begin = now();
      await producer.transaction();
      try {
        const byPartition = new Map<number, string>();
        await producer.sendBatch({ topicMessages: batches.map((b) => ckMessages(b, output)) });
        for (const b of batches) byPartition.set(b.partition, b.messages[b.messages.length - 1]!.offset);
        await producer.sendOffsets({
          consumer,
          topics: [
            {
              topic: input,
              partitions: [...byPartition].map(([partition, last]) => ({
                partition,
                offset: String(BigInt(last) + 1n),
              })),
            },
          ],
        });
        const c0 = now();
        await producer.commit();
        stats.commitMs.push(now() - c0);
        stats.txnMs.push(now() - begin);
        stats.transactions += 1;
        counted(stats, records, expected);
      } catch (error) {
        await producer.abort().catch(() => undefined);
        throw error;
      }
      for (const w of these) w.resolve();
    } catch (error) {
      failure ??= error as Error;
      for (const w of these) w.reject(error as Error);
    } finally {
      running = false;
      kick();
    }
  };
  function kick(): void {
    if (running || pending.length === 0 || timer) return;
    const wait = pendingSince + intervalMs - now();
    if (wait > 0 && pendingRecords < MAX_GATHERED) {
      timer = setTimeout(() => {
        timer = undefined;
        kick();
      }, wait);
      return;
    }
    // setImmediate: the batches of the same fetch, handed over together, join this transaction.
    timer = setTimeout(() => {
      timer = undefined;
      if (!running && pending.length > 0) void commitGathered();
      else kick();
    }, 0);
  }

  await consumer.connect();
  await consumer.subscribe({ topics: [input] });
  void consumer
    .run({
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }) => {
        if (batch.messages.length === 0) return;
        if (failure) throw failure;
        if (stats.firstConsumed === 0) stats.firstConsumed = now();
        if (pending.length === 0) pendingSince = now();
        pending.push({ partition: batch.partition, messages: batch.messages });
        pendingRecords += batch.messages.length;
        const committed = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
        kick();
        if (intervalMs === 0 || pendingRecords >= MAX_GATHERED) await committed;
        else committed.catch(() => undefined);
      },
    })
    .catch((error: Error) => (failure ??= error));
  return {
    stats,
    joined,
    error: () => failure,
    stop: async () => {
      while (running) await sleep(10);
      if (timer) clearTimeout(timer);
      await consumer.disconnect().catch(() => undefined);
      await producer.disconnect().catch(() => undefined);
    },
  } satisfies Pipeline;
}

function startPipeline(kafka: Kafka, v: VariantId, group: string, input: string, output: string, expected: number) {
  if (v === 1) return kafkajsPerPartition(kafka, group, input, output, expected);
  if (v === 2) return confluentPerPartition(group, input, output, expected);
  return confluentPerMember(group, input, output, expected, v === 3 ? 0 : 100);
}

// ---------------------------------------------------------------------------------------------------------------
// Verification: read the output read_committed, count each sequence number.

interface Verified {
  read: number;
  distinct: number;
  missing: number;
  duplicates: number;
}

async function verify(kafka: Kafka, topic: string, expected: number, group: string): Promise<Verified> {
  const seen = new Uint8Array(expected);
  let read = 0;
  let other = 0;
  const consumer = kafka.consumer({ groupId: group, readUncommitted: false, maxBytesPerPartition: 4 << 20 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let lastRead = now();
  void consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const seq = seqOf(m.value);
        if (seq >= 0 && seq < expected) seen[seq] = Math.min(255, seen[seq]! + 1);
        else other += 1;
        read += 1;
      }
      lastRead = now();
    },
  });
  const deadline = now() + 120_000;
  // Until everything came and nothing more for 2 s (a duplicate would come after).
  while (now() < deadline && (read < expected || now() - lastRead < 2_000)) await sleep(100);
  await consumer.disconnect();
  let missing = 0;
  let duplicates = other;
  for (let i = 0; i < expected; i += 1) {
    if (seen[i] === 0) missing += 1;
    else if (seen[i]! > 1) duplicates += seen[i]! - 1;
  }
  return { read, distinct: expected - missing, missing, duplicates };
}

// ---------------------------------------------------------------------------------------------------------------
// Throughput

interface ThroughputResult {
  variant: VariantId;
  name: string;
  status: 'ok' | 'error';
  error?: string;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  transactions: number;
  transactionsPerSecond: number;
  recordsPerTransaction: number;
  commitMeanMs: number;
  transactionMeanMs: number;
  lagAfter: number;
  /** CPU time of this process (JS and librdkafka's threads) per 1,000 events, start → all committed. */
  cpuMsPer1k: number;
  verified?: Verified;
  loadavg: { before: number[]; after: number[] };
}

async function groupLag(admin: Admin, group: string, topic: string): Promise<number> {
  const ends = await admin.fetchTopicOffsets(topic);
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  let lag = 0;
  for (const e of ends) {
    const c = committed?.partitions.find((p) => p.partition === e.partition);
    const at = c && Number(c.offset) >= 0 ? Number(c.offset) : 0;
    lag += Number(e.high) - at;
  }
  return lag;
}

const mean = (xs: number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);

async function throughputPhase(
  kafka: Kafka,
  admin: Admin,
  run: string,
  v: VariantId,
  input: string,
  events: number,
): Promise<ThroughputResult> {
  const output = `${run}-out-${v}`;
  await admin.createTopics({ topics: [{ topic: output, numPartitions: PARTITIONS }], waitForLeaders: true });
  const group = `${run}-g${v}`;
  const before = loadavg().map((x) => round(x, 2));
  const result: ThroughputResult = {
    variant: v,
    name: VARIANTS[v],
    status: 'ok',
    events,
    seconds: NaN,
    eventsPerSecond: NaN,
    transactions: 0,
    transactionsPerSecond: NaN,
    recordsPerTransaction: NaN,
    commitMeanMs: NaN,
    transactionMeanMs: NaN,
    lagAfter: NaN,
    cpuMsPer1k: NaN,
    loadavg: { before, after: [] },
  };
  let pipeline: Pipeline | undefined;
  const cpu0 = process.cpuUsage();
  try {
    pipeline = await within(60_000, `variant ${v} start`, startPipeline(kafka, v, group, input, output, events));
    const deadline = now() + 600_000;
    while (pipeline.stats.allCommittedAt === 0 && !pipeline.error() && now() < deadline) await sleep(20);
    const failure = pipeline.error();
    if (failure) throw failure;
    if (pipeline.stats.allCommittedAt === 0) throw new Error(`variant ${v}: not done within 600 s`);
    const cpu = process.cpuUsage(cpu0);
    result.cpuMsPer1k = round((cpu.user + cpu.system) / 1000 / (events / 1000));
    const s = pipeline.stats;
    result.seconds = (s.allCommittedAt - s.firstConsumed) / 1000;
    result.eventsPerSecond = Math.round(events / result.seconds);
    result.transactions = s.transactions;
    result.transactionsPerSecond = round(s.transactions / result.seconds);
    result.recordsPerTransaction = Math.round(s.committedRecords / s.transactions);
    result.commitMeanMs = round(mean(s.commitMs));
    result.transactionMeanMs = round(mean(s.txnMs));
  } catch (error) {
    result.status = 'error';
    result.error = (error as Error).message;
  } finally {
    result.loadavg.after = loadavg().map((x) => round(x, 2));
    if (pipeline) await within(60_000, `variant ${v} stop`, pipeline.stop()).catch(() => undefined);
  }
  result.lagAfter = await groupLag(admin, group, input);
  result.verified = await verify(kafka, output, events, `${run}-verify-${v}`);
  if (result.verified.missing > 0 || result.verified.duplicates > 0 || result.lagAfter !== 0) result.status = 'error';
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Latency at a paced rate

interface LatencyResult {
  variant: VariantId;
  name: string;
  status: 'ok' | 'error';
  error?: string;
  rate: number;
  sent: number;
  measured: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  transactionsPerSecond: number;
  recordsPerTransaction: number;
  commitMeanMs: number;
  /** CPU time of this process per 1,000 events while sending and draining (includes the sender and the probe). */
  cpuMsPer1k: number;
  missing: number;
  duplicates: number;
  loadavg: { before: number[]; after: number[] };
}

async function latencyPhase(kafka: Kafka, admin: Admin, run: string, v: VariantId, o: Options): Promise<LatencyResult> {
  const input = `${run}-lat-in-${v}`;
  const output = `${run}-lat-out-${v}`;
  await admin.createTopics({
    topics: [
      { topic: input, numPartitions: PARTITIONS },
      { topic: output, numPartitions: PARTITIONS },
    ],
    waitForLeaders: true,
  });
  const total = o.rate * (o.warmupSeconds + o.latencySeconds);
  const warmup = o.rate * o.warmupSeconds;
  const sentAt = new Float64Array(total).fill(NaN);
  const receivedAt = new Float64Array(total).fill(NaN);
  let duplicates = 0;
  const result: LatencyResult = {
    variant: v,
    name: VARIANTS[v],
    status: 'ok',
    rate: o.rate,
    sent: 0,
    measured: 0,
    p50Ms: NaN,
    p99Ms: NaN,
    maxMs: NaN,
    transactionsPerSecond: NaN,
    recordsPerTransaction: NaN,
    commitMeanMs: NaN,
    cpuMsPer1k: NaN,
    missing: 0,
    duplicates: 0,
    loadavg: { before: loadavg().map((x) => round(x, 2)), after: [] },
  };
  let pipeline: Pipeline | undefined;
  const probe = kafka.consumer({ groupId: `${run}-lat-probe-${v}`, readUncommitted: false, maxWaitTimeInMs: 100 });
  const sender = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  try {
    pipeline = await within(
      60_000,
      `latency ${v} start`,
      startPipeline(kafka, v, `${run}-lat-g${v}`, input, output, 0),
    );
    await within(60_000, `latency ${v} join`, pipeline.joined);
    let probeJoined!: () => void;
    const probeReady = new Promise<void>((resolve) => (probeJoined = resolve));
    probe.on(probe.events.GROUP_JOIN, () => probeJoined());
    await probe.connect();
    await probe.subscribe({ topic: output, fromBeginning: true });
    void probe.run({
      autoCommit: false,
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch }) => {
        const t = now();
        for (const m of batch.messages) {
          const seq = seqOf(m.value);
          if (seq < 0 || seq >= total) continue;
          if (Number.isNaN(receivedAt[seq]!)) receivedAt[seq] = t;
          else duplicates += 1;
        }
      },
    });
    await within(60_000, `latency ${v} probe join`, probeReady);
    await sender.connect();
    // Paced: every 10 ms the records due by then, round-robin over the partitions.
    const cpu0 = process.cpuUsage();
    const start = now();
    const inFlight = new Set<Promise<unknown>>();
    let next = 0;
    while (next < total) {
      const due = Math.min(total, Math.floor(((now() - start) / 1000) * o.rate));
      if (due > next) {
        const byPartition = new Map<number, Array<{ value: Buffer; partition: number }>>();
        const t = now();
        for (; next < due; next += 1) {
          sentAt[next] = t;
          const p = next % PARTITIONS;
          let list = byPartition.get(p);
          if (!list) byPartition.set(p, (list = []));
          list.push({ value: recordValue(next), partition: p });
        }
        const send = sender.send({ topic: input, acks: -1, messages: [...byPartition.values()].flat() });
        inFlight.add(send);
        void send.finally(() => inFlight.delete(send));
      }
      await sleep(10 - ((now() - start) % 10));
    }
    await Promise.all(inFlight);
    result.sent = total;
    const drain = now() + 60_000;
    const received = (): number => receivedAt.reduce((n, t) => (Number.isNaN(t) ? n : n + 1), 0);
    while (received() < total && now() < drain && !pipeline.error()) await sleep(100);
    const cpu = process.cpuUsage(cpu0);
    result.cpuMsPer1k = round((cpu.user + cpu.system) / 1000 / (total / 1000));
    await sleep(1_000); // a duplicate would come after the first receipt
    const failure = pipeline.error();
    if (failure) throw failure;
    const lat: number[] = [];
    for (let i = 0; i < total; i += 1) {
      if (Number.isNaN(receivedAt[i]!)) result.missing += 1;
      else if (i >= warmup) lat.push(receivedAt[i]! - sentAt[i]!);
    }
    const sorted = Float64Array.from(lat).sort();
    result.measured = sorted.length;
    result.p50Ms = round(quantile(sorted, 0.5));
    result.p99Ms = round(quantile(sorted, 0.99));
    result.maxMs = round(sorted[sorted.length - 1] ?? NaN);
    const s = pipeline.stats;
    const seconds = (now() - s.firstConsumed) / 1000;
    result.transactionsPerSecond = round(s.transactions / seconds);
    result.recordsPerTransaction = round(s.committedRecords / s.transactions);
    result.commitMeanMs = round(mean(s.commitMs));
    result.duplicates = duplicates;
    if (result.missing > 0 || duplicates > 0) result.status = 'error';
  } catch (error) {
    result.status = 'error';
    result.error = (error as Error).message;
  } finally {
    result.loadavg.after = loadavg().map((x) => round(x, 2));
    await sender.disconnect().catch(() => undefined);
    await probe.disconnect().catch(() => undefined);
    if (pipeline) await within(60_000, `latency ${v} stop`, pipeline.stop()).catch(() => undefined);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Fencing: a zombie member's late offsets and commit for partitions it lost.

/**
 * The zombie (a child process, `--zombie <group> <input> <output> <static|dynamic>`): one member with one
 * transactional producer. It consumes every record of the input (all 6 partitions are its own), begins a
 * transaction and produces their outputs, says READY, and waits without returning to its event loop. The parent
 * freezes it (SIGSTOP) past its session timeout, lets a second member take the partitions and commit them, then thaws
 * it: the zombie at once sends its offsets with its consumer's group metadata and commits, and reports what happened.
 */
async function zombie(group: string, input: string, output: string, mode: string): Promise<void> {
  const lib = ck();
  const consumer = new lib.KafkaConsumer(
    {
      'bootstrap.servers': BROKERS.join(','),
      'group.id': group,
      'enable.auto.commit': false,
      'isolation.level': 'read_committed',
      'session.timeout.ms': 6_000,
      'heartbeat.interval.ms': 2_000,
      'max.poll.interval.ms': 60_000,
      ...(mode === 'static' ? { 'group.instance.id': `${group}-zombie` } : {}),
    },
    { 'auto.offset.reset': 'earliest' },
  );
  const producer = new lib.Producer({
    'bootstrap.servers': BROKERS.join(','),
    'transactional.id': `${group}-zombie`,
    'enable.idempotence': true,
  });
  await cb2p((cb) => consumer.connect(null, cb));
  await cb2p((cb) => producer.connect(null, cb));
  producer.setPollInterval(100);
  await cb2p((cb) => producer.initTransactions(30_000, cb));
  consumer.subscribe([input]);
  consumer.setDefaultConsumeTimeout(200);
  const last = new Map<number, number>();
  let got = 0;
  const deadline = Date.now() + 60_000;
  const expected = Number(process.env.ZOMBIE_EXPECTED ?? '0');
  await cb2p((cb) => producer.beginTransaction(cb));
  while (got < expected && Date.now() < deadline) {
    const messages = await new Promise<Array<CkMessage & { partition: number; topic: string }>>((resolve, reject) =>
      consumer.consume(1_000, (e, ms) => (e ? reject(e) : resolve(ms))),
    );
    for (const m of messages) {
      producer.produce(output, m.partition, m.value!, m.key);
      last.set(m.partition, Math.max(last.get(m.partition) ?? -1, Number(m.offset)));
      got += 1;
    }
  }
  const report = (what: Record<string, unknown>): void => {
    process.stdout.write(`${JSON.stringify(what)}\n`);
  };
  report({ ready: true, consumed: got, partitions: [...last.keys()].sort() });
  // Wait without yielding to the event loop, so nothing of ours runs until we are thawed; a jump of the clock means
  // we were frozen.
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const t = Date.now();
    Atomics.wait(cell, 0, 0, 1);
    if (Date.now() - t > 2_000) break;
  }
  const offsets = [...last].map(([partition, offset]) => ({ topic: input, partition, offset: offset + 1 }));
  report({ thawed: true });
  let sendOffsets: Record<string, unknown> = { ok: true };
  let commit: Record<string, unknown> = { ok: true };
  let t0 = Date.now();
  try {
    await cb2p((cb) => producer.sendOffsetsToTransaction(offsets, consumer, 20_000, cb));
  } catch (error) {
    sendOffsets = { ok: false, error: describeError(error) };
  }
  sendOffsets.ms = Date.now() - t0;
  t0 = Date.now();
  try {
    await cb2p((cb) => producer.commitTransaction(20_000, cb));
  } catch (error) {
    commit = { ok: false, error: describeError(error) };
    await cb2p((cb) => producer.abortTransaction(20_000, cb)).catch(() => undefined);
  }
  commit.ms = Date.now() - t0;
  report({ done: true, sendOffsets, commit });
  await cb2p((cb) => producer.disconnect(10_000, cb)).catch(() => undefined);
  await cb2p((cb) => consumer.disconnect(cb)).catch(() => undefined);
}

interface FencingResult {
  mode: 'dynamic' | 'static';
  status: 'ok' | 'error';
  error?: string;
  records: number;
  zombieConsumed: number;
  frozenMs: number;
  survivorCommittedRecords: number;
  zombieThawed?: boolean;
  zombieSendOffsets?: unknown;
  zombieCommit?: unknown;
  verified?: Verified;
}

async function fencingDemo(
  kafka: Kafka,
  admin: Admin,
  run: string,
  mode: 'dynamic' | 'static',
): Promise<FencingResult> {
  const input = `${run}-fence-in-${mode}`;
  const output = `${run}-fence-out-${mode}`;
  const group = `${run}-fence-${mode}`;
  const records = 600;
  await admin.createTopics({
    topics: [
      { topic: input, numPartitions: PARTITIONS },
      { topic: output, numPartitions: PARTITIONS },
    ],
    waitForLeaders: true,
  });
  const seed = kafka.producer({ idempotent: true });
  await seed.connect();
  await seed.send({
    topic: input,
    acks: -1,
    messages: Array.from({ length: records }, (_, i) => ({ partition: i % PARTITIONS, value: recordValue(i) })),
  });
  await seed.disconnect();
  const result: FencingResult = {
    mode,
    status: 'ok',
    records,
    zombieConsumed: 0,
    frozenMs: 0,
    survivorCommittedRecords: 0,
  };
  const child = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), '--zombie', group, input, output, mode],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ZOMBIE_EXPECTED: String(records) } },
  );
  const lines: Array<Record<string, unknown>> = [];
  let buffered = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let i: number;
    while ((i = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, i);
      buffered = buffered.slice(i + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not ours (a library's log line)
      }
    }
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const waitFor = async (key: string, ms: number): Promise<Record<string, unknown>> => {
    const deadline = now() + ms;
    for (;;) {
      const line = lines.find((l) => l[key] !== undefined);
      if (line) return line;
      if (now() > deadline) throw new Error(`zombie: no "${key}" within ${ms} ms`);
      await sleep(20);
    }
  };
  let survivor: Pipeline | undefined;
  let frozen = false;
  try {
    const ready = await waitFor('ready', 90_000);
    result.zombieConsumed = Number(ready.consumed);
    child.kill('SIGSTOP');
    frozen = true;
    const frozenAt = now();
    // The second member: one producer per member, KIP-447 offsets, a transaction per fetch (variant 3).
    survivor = await confluentPerMember(group, input, output, records, 0);
    const deadline = now() + 90_000;
    while (survivor.stats.allCommittedAt === 0 && !survivor.error() && now() < deadline) await sleep(50);
    if (survivor.error()) throw survivor.error()!;
    if (survivor.stats.allCommittedAt === 0) throw new Error('the second member did not commit every record in 90 s');
    result.survivorCommittedRecords = survivor.stats.committedRecords;
    result.frozenMs = Math.round(now() - frozenAt);
    child.kill('SIGCONT');
    frozen = false;
    await waitFor('thawed', 30_000);
    result.zombieThawed = true;
    const done = await waitFor('done', 90_000);
    result.zombieSendOffsets = done.sendOffsets;
    result.zombieCommit = done.commit;
  } catch (error) {
    result.status = 'error';
    result.error = (error as Error).message;
  } finally {
    if (frozen) child.kill('SIGCONT');
    await within(30_000, 'zombie exit', exited).catch(() => child.kill('SIGKILL'));
    if (survivor) await within(60_000, 'second member stop', survivor.stop()).catch(() => undefined);
  }
  result.verified = await verify(kafka, output, records, `${group}-verify`);
  if (result.verified.missing > 0 || result.verified.duplicates > 0) result.status = 'error';
  return result;
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const run = `txs-${Date.now().toString(36)}`;
  const kafka = new Kafka({ clientId: 'txn-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const started = new Date().toISOString();
  const report: Record<string, unknown> = {
    started,
    events: o.events,
    recordBytes: RECORD_BYTES,
    partitions: PARTITIONS,
    loadavgAtStart: loadavg().map((x) => round(x, 2)),
  };
  const topics: string[] = [];
  try {
    // 1. The input, once, for every variant.
    const input = `${run}-in`;
    await admin.createTopics({ topics: [{ topic: input, numPartitions: PARTITIONS }], waitForLeaders: true });
    const seed = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
    await seed.connect();
    for (let i = 0; i < o.events; i += 5_000) {
      const n = Math.min(5_000, o.events - i);
      await seed.send({
        topic: input,
        acks: -1,
        messages: Array.from({ length: n }, (_, j) => ({
          partition: (i + j) % PARTITIONS,
          key: `k${(i + j) % 1000}`,
          value: recordValue(i + j),
        })),
      });
    }
    await seed.disconnect();
    console.log(`${run}: ${o.events} records of ${RECORD_BYTES} bytes in ${input}`);

    const throughput: ThroughputResult[] = [];
    for (const v of o.throughput ? (o.variants as VariantId[]) : []) {
      const r = await throughputPhase(kafka, admin, run, v, input, o.events);
      console.log(
        `  throughput ${v} (${r.name}): ${r.eventsPerSecond}/s, ${r.transactionsPerSecond} txn/s, ${r.recordsPerTransaction} rec/txn, commit ${r.commitMeanMs} ms, txn ${r.transactionMeanMs} ms, cpu ${r.cpuMsPer1k} ms/1k, lag ${r.lagAfter}, ${JSON.stringify(r.verified)} ${r.status}${r.error ? ` ${r.error}` : ''}, load ${r.loadavg.before[0]}→${r.loadavg.after[0]}`,
      );
      throughput.push(r);
    }
    report.throughput = throughput;

    if (o.latency) {
      const latency: LatencyResult[] = [];
      for (const v of o.variants as VariantId[]) {
        const r = await latencyPhase(kafka, admin, run, v, o);
        console.log(
          `  latency ${v}: p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, max ${r.maxMs} ms (${r.measured} measured), ${r.transactionsPerSecond} txn/s, ${r.recordsPerTransaction} rec/txn, commit ${r.commitMeanMs} ms, cpu ${r.cpuMsPer1k} ms/1k, missing ${r.missing}, dup ${r.duplicates} ${r.status}${r.error ? ` ${r.error}` : ''}, load ${r.loadavg.before[0]}→${r.loadavg.after[0]}`,
        );
        latency.push(r);
      }
      report.latency = latency;
    }

    if (o.fencing) {
      const fencing: FencingResult[] = [];
      for (const mode of ['dynamic', 'static'] as const) {
        const r = await fencingDemo(kafka, admin, run, mode);
        console.log(`  fencing (${mode} membership): ${JSON.stringify(r)}`);
        fencing.push(r);
      }
      report.fencing = fencing;
    }
  } finally {
    report.loadavgAtEnd = loadavg().map((x) => round(x, 2));
    report.finished = new Date().toISOString();
    const all = await admin.listTopics().catch(() => [] as string[]);
    topics.push(...all.filter((t) => t.startsWith(`${run}-`)));
    if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
    const dir = fileURLToPath(new URL('./results/', import.meta.url));
    mkdirSync(dir, { recursive: true });
    const file = `${dir}txn-strategy-${started.replace(/[:.]/g, '-')}.json`;
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`results: ${file}`);
  }
}

if (process.argv[2] === '--zombie') {
  const [group, input, output, mode] = process.argv.slice(3);
  if (!group || !input || !output || (mode !== 'static' && mode !== 'dynamic'))
    throw new Error('--zombie <group> <input> <output> <static|dynamic>');
  zombie(group, input, output, mode).then(
    () => process.exit(0),
    (error: Error) => {
      process.stdout.write(`${JSON.stringify({ done: true, error: describeError(error) })}\n`);
      process.exit(1);
    },
  );
} else {
  main().then(
    () => process.exit(0),
    (error: Error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
