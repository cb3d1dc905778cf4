/**
 * ClickHouse sink throughput on the real local stack (not part of the test run).
 *
 *   npx tsx bench/clickhouse-sink.ts [--rows N] [--records N] [--batch-rows N] [--inserts K] [--concurrency K]
 *                                     [--profile DIR]
 *
 * One run, a fresh database, topic and group:
 *   1. writer: N findings-shaped rows (built before the clock starts) through `ClickHouseWriter` into `findings`,
 *      from the first write() to close() having inserted the last row;
 *   2. consume+decode: M Avro `agentstreams.fleet.Finding` records read by a plain kafkajs consumer that only
 *      decodes them: the Kafka-side ceiling for any sink in this process;
 *   3. topic sink: the same M records through `runClickHouseSink` (decode, map, insert, commit), from start until
 *      every record's row is inserted and its offset committed; once with the fleet's mapping function
 *      (`findingRow`), once with the same mapping declared column by column (`mapColumns`, transcoded straight
 *      from Avro), each on a fresh group; the two tables' contents must hash the same.
 *
 *   npx tsx bench/clickhouse-sink.ts [...] [--mappings function,declared] [--max-bytes-per-partition N]
 * Prints rows/s for each next to ARCHITECTURE §7's bar (ClickHouse sink ≥ 100k rows/s per instance), then removes
 * what it created (unless --keep).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { logLevel } from 'kafkajs';
import { kafkaClient } from '../runtime/kafka/client.ts';
import { loadConfig } from '../runtime/config/index.ts';
import { createMetrics } from '../runtime/observability/metrics.ts';
import { AvroSerde, registryClient } from '../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../runtime/serde/schemas.ts';
import { FindingType, type Finding } from '../schemas/generated/types.ts';
import { openClickHouse } from '../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../sinks/clickhouse/schema.ts';
import { ClickHouseWriter, isSinkBackpressure } from '../sinks/clickhouse/writer.ts';
import { findingRow } from '../processors/results/rows.ts';
import { mapTo, runClickHouseSink } from '../sinks/clickhouse/topic-sink.ts';
import { findingColumns, findingRowAt } from '../test/sinks/clickhouse/findings.ts';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const BAR_ROWS_PER_SECOND = 100_000;

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '500000' },
    records: { type: 'string', default: '300000' },
    'batch-rows': { type: 'string', default: '50000' },
    inserts: { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '2' },
    partitions: { type: 'string', default: '6' },
    'max-bytes-per-partition': { type: 'string' },
    mappings: { type: 'string', default: 'function,declared' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(`npx tsx bench/clickhouse-sink.ts [options]
  --rows N           rows through the writer (default 500000; 0 skips the phase)
  --records N        Avro records through consume+decode and the topic sink (default 300000; 0 skips them)
  --batch-rows N     writer maxBatchRows (default 50000)
  --inserts K        writer maxConcurrentInserts (default 2)
  --concurrency K    topic sink partitionsConsumedConcurrently (default 2)
  --partitions N     partitions of the input topic (default 6)
  --max-bytes-per-partition N
                     fetch size per partition, for the consume+decode and topic sink phases (default: the
                     configured AS_CONSUMER_MAX_BYTES_PER_PARTITION)
  --mappings LIST    topic sink phases to run: function (findingRow), declared (mapColumns, transcoded);
                     default function,declared
  --profile DIR      write a V8 CPU profile of the writer and topic sink phases to DIR (figures then carry the
                     profiler's overhead; summarise with bench/profile-summary.ts)
  --keep             keep the database, topic and group`);
  process.exit(0);
}
const int = (name: string, raw: string, min = 0): number => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be a whole number >= ${min}, got "${raw}"`);
    process.exit(2);
  }
  return n;
};
const ROWS = int('rows', args.rows);
const RECORDS = int('records', args.records);
const BATCH_ROWS = int('batch-rows', args['batch-rows'], 1);
const INSERTS = int('inserts', args.inserts, 1);
const CONCURRENCY = int('concurrency', args.concurrency, 1);
const PARTITIONS = int('partitions', args.partitions, 1);
const MAPPINGS = args.mappings.split(',').map((m) => m.trim());
for (const m of MAPPINGS) {
  if (m !== 'function' && m !== 'declared') {
    console.error(`--mappings takes function and/or declared, got "${m}"`);
    process.exit(2);
  }
}
const MAX_BYTES_PER_PARTITION =
  args['max-bytes-per-partition'] === undefined
    ? undefined
    : int('max-bytes-per-partition', args['max-bytes-per-partition'], 1);

const stamp = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const database = `as_bench_${stamp}`;
const topic = `chbench-${stamp}.findings`;
const group = `chbench-${stamp}.clickhouse-sink`;
const config = loadConfig();
const benchConfig = { ...config, clickhouse: { ...config.clickhouse, database } };
const kafka = kafkaClient(config, 'bench', { logLevel: logLevel.NOTHING });

interface Figure {
  phase: string;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  note: string;
  /** CPU seconds this process used in the phase (user + system): what a shared machine's load does not inflate. */
  cpuSeconds?: number;
}

/** CPU seconds this process has used since `from` (a `process.cpuUsage()`). */
const cpuSince = (from: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1e6;
};
const figures: Figure[] = [];
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** A CPU profile of one phase, taken in-process so that set-up and production stay out of it. */
async function profiled<T>(phase: string, run: () => Promise<T>): Promise<T> {
  if (args.profile === undefined) return run();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 500 });
  await session.post('Profiler.start');
  try {
    return await run();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    mkdirSync(args.profile, { recursive: true });
    const file = join(args.profile, `${phase}-${stamp}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    console.log(`profile of ${phase}: ${file}`);
  }
}

async function writerPhase(): Promise<void> {
  const client = openClickHouse(benchConfig);
  try {
    await client.command({ query: 'TRUNCATE TABLE findings' });
    const rows = Array.from({ length: ROWS }, (_, i) => findingRowAt(i));
    const metrics = createMetrics({ processMetrics: false });
    const writer = await ClickHouseWriter.open({
      client,
      tables: ['findings'],
      maxBatchRows: BATCH_ROWS,
      maxConcurrentInserts: INSERTS,
      metrics,
    });
    let waits = 0;
    const started = performance.now();
    // Pieces of 1,000, as a stream processor's batches would arrive (yielding between them, as a consumer does
    // while it fetches, so that the inserts' request bodies can go out); backpressure is waited out as told.
    for (let i = 0; i < rows.length; i += 1_000) {
      if (i % 10_000 === 0) await new Promise((resolve) => setImmediate(resolve));
      const piece = rows.slice(i, i + 1_000);
      for (;;) {
        try {
          writer.write('findings', piece);
          break;
        } catch (error) {
          if (!isSinkBackpressure(error)) throw error;
          waits += 1;
          await sleep(error.retryAfterMs);
        }
      }
    }
    await writer.close();
    const seconds = (performance.now() - started) / 1000;
    const final = await (
      await client.query({ query: 'SELECT count() AS n FROM findings FINAL', format: 'JSONEachRow' })
    ).json<{ n: number }>();
    if (Number(final[0]!.n) !== ROWS)
      throw new Error(`writer phase: expected ${ROWS} rows, FINAL shows ${final[0]!.n}`);
    const histogram = await metrics.sinkOperationDuration.get();
    const sum = histogram.values.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
    figures.push({
      phase: 'writer',
      rows: ROWS,
      seconds,
      rowsPerSecond: ROWS / seconds,
      note: `${writer.stats.inserts} inserts of ~${fmt(ROWS / writer.stats.inserts)} rows, mean insert ${((1000 * sum) / writer.stats.inserts).toFixed(0)} ms, ${waits} backpressure waits`,
    });
  } finally {
    await client.close();
  }
}

function findingAt(i: number): Finding {
  const row = findingRowAt(i);
  return {
    findingId: row.finding_id,
    agent: row.agent,
    rule: row.rule,
    symbol: row.symbol,
    portfolioId: row.portfolio_id,
    severity: row.severity,
    windowStart: row.window_start * 1000,
    windowEnd: row.window_end * 1000,
    eventTime: row.event_time_ms,
    evidence: { return: -0.01 * (i % 9), zScore: (i % 50) / 10 },
    summary: `Finding ${i}: ${row.symbol} moved`,
    sourceTopic: row.source_topic,
    sourcePartition: row.source_partition,
    sourceOffset: row.source_offset,
  };
}

async function produceRecords(): Promise<void> {
  const registry = registryClient(config);
  await registerSchemas(
    config,
    registry,
    loadSchemas(join(root, 'schemas/fleet')).filter((s) => s.subject === FindingType),
  );
  const serde = new AvroSerde(registry);
  await serde.writerFor(FindingType);
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
  await admin.disconnect();
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  const started = performance.now();
  for (let i = 0; i < RECORDS; i += 10_000) {
    const messages = [];
    for (let k = i; k < Math.min(RECORDS, i + 10_000); k += 1) {
      const finding = findingAt(k);
      messages.push({ key: finding.symbol, value: serde.encode(FindingType, finding) });
    }
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();
  console.log(
    `produced ${fmt(RECORDS)} Avro findings to ${topic} (${PARTITIONS} partitions) in ${((performance.now() - started) / 1000).toFixed(1)} s (not measured)`,
  );
}

async function consumeDecodePhase(): Promise<void> {
  const serde = new AvroSerde(registryClient(config));
  const consumer = kafka.consumer({
    groupId: `${group}-decode`,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: MAX_BYTES_PER_PARTITION ?? config.consumer.maxBytesPerPartition,
  });
  let seen = 0;
  let sink = 0;
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const started = performance.now();
  const cpu = process.cpuUsage();
  await consumer.run({
    autoCommit: false,
    partitionsConsumedConcurrently: CONCURRENCY,
    eachBatch: async ({ batch }) => {
      await serde.resolve(batch.messages.map((m) => m.value));
      for (const m of batch.messages) sink += serde.decodeResolved<Finding>(m.value).value.sourceOffset & 1;
      seen += batch.messages.length;
    },
  });
  while (seen < RECORDS) await sleep(10);
  const seconds = (performance.now() - started) / 1000;
  const cpuSeconds = cpuSince(cpu);
  await consumer.disconnect();
  figures.push({
    phase: 'consume+decode (kafkajs, no sink)',
    rows: RECORDS,
    seconds,
    rowsPerSecond: RECORDS / seconds,
    note: `the Kafka-side ceiling for a sink in one process (checksum ${sink})`,
    cpuSeconds,
  });
}

/** A hash of every row FINAL shows: the function and declared mappings must leave the same table. */
const CONTENT_HASH = `SELECT toString(sum(cityHash64(finding_id, agent, rule, symbol, portfolio_id, toString(severity),
  window_start, window_end, event_time, event_time_ms, evidence, source_topic, source_partition, source_offset,
  created_at, version))) AS h FROM findings FINAL`;
const contentHashes = new Map<string, string>();

async function topicSinkPhase(mapping: string): Promise<void> {
  const client = openClickHouse(benchConfig);
  await client.command({ query: 'TRUNCATE TABLE findings' });
  const metrics = createMetrics({ processMetrics: false });
  const started = performance.now();
  const cpu = process.cpuUsage();
  const sink = await runClickHouseSink({
    config: benchConfig,
    name: `${group}-${mapping}`,
    topics: [topic],
    deadLetterTopic: `chbench-${stamp}.dead-letters`,
    mappings: {
      [FindingType]: mapping === 'declared' ? findingColumns : mapTo<Finding>('findings', findingRow),
    },
    writer: { maxBatchRows: BATCH_ROWS, maxConcurrentInserts: INSERTS },
    partitionsConsumedConcurrently: CONCURRENCY,
    ...(MAX_BYTES_PER_PARTITION === undefined ? {} : { maxBytesPerPartition: MAX_BYTES_PER_PARTITION }),
    metrics,
  });
  let joinedAt = Number.NaN;
  void sink.joined.then(() => (joinedAt = performance.now()));
  let consumedAt = Number.NaN;
  try {
    while (sink.stats.rowsInserted < RECORDS) {
      if (sink.state() !== 'running') throw new Error(`sink stopped: ${sink.error()?.message}`);
      if (Number.isNaN(consumedAt) && sink.stats.records >= RECORDS) consumedAt = performance.now();
      await sleep(5);
    }
    if (Number.isNaN(consumedAt)) consumedAt = performance.now();
    const insertedAt = performance.now();
    await sink.checkpoint();
    const seconds = (performance.now() - started) / 1000;
    const cpuSeconds = cpuSince(cpu);
    const final = await (
      await client.query({ query: 'SELECT count() AS n FROM findings FINAL', format: 'JSONEachRow' })
    ).json<{ n: number }>();
    if (Number(final[0]!.n) !== RECORDS)
      throw new Error(`topic sink phase: expected ${RECORDS} rows, FINAL shows ${final[0]!.n}`);
    const hash = await (await client.query({ query: CONTENT_HASH, format: 'JSONEachRow' })).json<{ h: string }>();
    contentHashes.set(mapping, hash[0]!.h);
    figures.push({
      phase: `topic sink, ${mapping} mapping`,
      rows: RECORDS,
      seconds,
      rowsPerSecond: RECORDS / seconds,
      cpuSeconds,
      note: `${sink.stats.transcoded} of ${sink.stats.records} transcoded, ${sink.stats.inserts} inserts, ${sink.stats.earlySends} early sends, ${sink.stats.pauses} backpressure pauses, ${sink.stats.commits} commits; joined at ${((joinedAt - started) / 1000).toFixed(2)} s, last record consumed at ${((consumedAt - started) / 1000).toFixed(2)} s, last row inserted at ${((insertedAt - started) / 1000).toFixed(2)} s`,
    });
  } finally {
    await sink.stop();
    await client.close();
  }
}

async function cleanup(): Promise<void> {
  if (args.keep) {
    console.log(`kept: database ${database}, topic ${topic}, group ${group}`);
    return;
  }
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic, `chbench-${stamp}.dead-letters`] }).catch(() => undefined);
  await admin.deleteGroups([`${group}-decode`, ...MAPPINGS.map((m) => `${group}-${m}`)]).catch(() => undefined);
  await admin.disconnect();
  const server = openClickHouse(benchConfig, { database: null });
  await server.command({ query: `DROP DATABASE IF EXISTS ${database}` });
  await server.close();
}

console.log(
  `ClickHouse sink bench — ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}, Node ${process.version}`,
);
console.log(
  `writer: maxBatchRows ${fmt(BATCH_ROWS)}, maxConcurrentInserts ${INSERTS}; topic sink: partitionsConsumedConcurrently ${CONCURRENCY}, maxBytesPerPartition ${fmt(MAX_BYTES_PER_PARTITION ?? config.consumer.maxBytesPerPartition)}`,
);
try {
  await migrateDatabase(benchConfig, root);
  if (ROWS > 0) await profiled('writer', writerPhase);
  if (RECORDS > 0) {
    await produceRecords();
    await consumeDecodePhase();
    for (const mapping of MAPPINGS) await profiled(`topic-sink-${mapping}`, () => topicSinkPhase(mapping));
    if (new Set(contentHashes.values()).size > 1)
      throw new Error(`the mappings left different tables: ${JSON.stringify(Object.fromEntries(contentHashes))}`);
  }
} finally {
  await cleanup();
}
console.log('');
console.log(
  `${'phase'.padEnd(42)} ${'rows'.padStart(9)} ${'seconds'.padStart(8)} ${'rows/s'.padStart(9)}  vs bar ${fmt(BAR_ROWS_PER_SECOND)}/s`,
);
for (const f of figures) {
  const verdict = f.phase.startsWith('consume')
    ? '(reference)'
    : f.rowsPerSecond >= BAR_ROWS_PER_SECOND
      ? 'meets'
      : 'below';
  console.log(
    `${f.phase.padEnd(42)} ${fmt(f.rows).padStart(9)} ${f.seconds.toFixed(2).padStart(8)} ${fmt(f.rowsPerSecond).padStart(9)}  ${verdict}`,
  );
  console.log(`${''.padEnd(42)} ${f.note}`);
  if (f.cpuSeconds !== undefined)
    console.log(
      `${''.padEnd(42)} this process's CPU: ${f.cpuSeconds.toFixed(2)} s, ${((1e6 * f.cpuSeconds) / f.rows).toFixed(1)} µs per row (${fmt(f.rows / f.cpuSeconds)} rows per CPU-second)`,
    );
}
