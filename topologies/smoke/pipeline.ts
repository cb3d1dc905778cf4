/**
 * The smoke pipeline: the whole stack exercised once, end to end. It registers the market schemas, produces
 * Avro price ticks to Kafka, consumes and decodes them in a consumer group, keeps per-symbol state in Redis
 * (one pipelined round trip per batch) and writes one row per symbol to ClickHouse (one insert). The market
 * fleet replaces it as the demo; it stays as the quickest proof that a machine's stack works.
 */
import { join } from 'node:path';
import { kafkaClient } from '../../runtime/kafka/client.ts';
import { Redis } from 'ioredis';
import type { Config } from '../../runtime/config/index.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { namedQuerySql } from '../../sinks/clickhouse/queries.ts';

export interface SmokeOptions {
  events: number;
  symbols: string[];
  log: (line: string) => void;
}

export interface SmokeResult {
  runId: string;
  produced: number;
  consumed: number;
  schemaIds: Record<string, number>;
  redisKeys: number;
  clickhouseRows: number;
  perSymbol: Array<{ symbol: string; ticks: number; low: number; high: number; last: number }>;
  seconds: Record<string, number>;
}

const TOPIC = 'smoke.price-ticks';
const TICK = 'agentstreams.market.PriceTick';

export async function runSmokePipeline(config: Config, root: string, options: SmokeOptions): Promise<SmokeResult> {
  const { log } = options;
  const runId = `smoke-${Date.now().toString(36)}`;
  const seconds: Record<string, number> = {};
  const timed = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      seconds[label] = Number(((performance.now() - started) / 1000).toFixed(3));
    }
  };

  const migrated = await timed('migrate', () => migrateDatabase(config, root));
  log(`clickhouse: ${migrated.applied.length} migrations applied, ${migrated.alreadyApplied.length} already in place`);

  const registry = registryClient(config);
  const registered = await timed('register', () => registerSchemas(config, registry, loadSchemas(join(root, 'schemas'))));
  const schemaIds = Object.fromEntries(registered.map((r) => [r.subject, r.id]));
  log(`registry: ${registered.map((r) => `${r.subject} → id ${r.id}`).join(', ')}`);

  const kafka = kafkaClient(config, 'smoke');
  const admin = kafka.admin();
  await admin.connect();
  const existing = await admin.listTopics();
  if (!existing.includes(TOPIC)) await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 6 }], waitForLeaders: true });
  const endOffsets = await admin.fetchTopicOffsets(TOPIC);
  await admin.disconnect();

  // Produce: a random walk per symbol, seeded by position so runs are comparable.
  const serde = new AvroSerde(registry);
  await serde.writerFor(TICK);
  const start = Date.now();
  const ticks = Array.from({ length: options.events }, (_, i) => {
    const symbol = options.symbols[i % options.symbols.length]!;
    const price = Number((100 + 10 * Math.sin(i / 17 + symbol.length)).toFixed(4));
    return { symbol, eventTime: start + i, price, bid: price - 0.01, ask: price + 0.01, currency: 'USD', venue: runId };
  });
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  await timed('produce', () => producer.send({ topic: TOPIC, acks: -1, messages: ticks.map((t) => ({ key: t.symbol, value: serde.encode(TICK, t) })) }));
  await producer.disconnect();
  log(`kafka: produced ${ticks.length} PriceTick events to ${TOPIC} (6 partitions)`);

  // Consume only this run's records: start each partition at the offset it had before we produced.
  const redis = new Redis(config.redis.url, { lazyConnect: true });
  await redis.connect();
  const consumer = kafka.consumer({ groupId: `${runId}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC });
  const reader = new AvroSerde(registry);
  const stats = new Map<string, { ticks: number; low: number; high: number; last: number }>();
  let consumed = 0;
  let redisKeys = 0;
  await timed('consume', async () => {
    consumer.on(consumer.events.GROUP_JOIN, () => {
      for (const { partition, offset } of endOffsets) consumer.seek({ topic: TOPIC, partition, offset });
    });
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachBatchAutoResolve: true,
          eachBatch: async ({ batch }) => {
            await reader.resolve(batch.messages.map((m) => m.value));
            const touched = new Map<string, { ticks: number; low: number; high: number; last: number }>();
            for (const message of batch.messages) {
              const { value } = reader.decodeResolved<{ symbol: string; price: number; venue: string }>(message.value);
              if (value.venue !== runId) continue;
              const s = stats.get(value.symbol) ?? { ticks: 0, low: Infinity, high: -Infinity, last: 0 };
              s.ticks += 1;
              s.low = Math.min(s.low, value.price);
              s.high = Math.max(s.high, value.price);
              s.last = value.price;
              stats.set(value.symbol, s);
              touched.set(value.symbol, s);
              consumed += 1;
            }
            // One pipelined round trip per batch, never one per record. `{runId}` is a hash tag: one cluster slot.
            const pipeline = redis.pipeline();
            for (const [symbol, s] of touched) {
              const key = `smoke:{${runId}}:${symbol}`;
              pipeline.hset(key, { ticks: s.ticks, low: s.low, high: s.high, last: s.last }).expire(key, 3600);
            }
            await pipeline.exec();
            if (consumed >= ticks.length) resolve();
          },
        })
        .catch(reject);
    });
  });
  await consumer.disconnect();
  redisKeys = (await redis.keys(`smoke:{${runId}}:*`)).length;
  await redis.quit();
  log(`consumer group ${runId}-group: decoded ${consumed} events; per-symbol state in Redis under smoke:{${runId}}:* (${redisKeys} keys)`);

  // One ClickHouse insert for the run: a row per symbol.
  const clickhouse = openClickHouse(config);
  const nowSeconds = Math.floor(Date.now() / 1000);
  const windowStart = Math.floor(start / 1000);
  const rows = [...stats].map(([symbol, s]) => ({
    finding_id: `${runId}:${symbol}`, agent: 'smoke-pipeline', rule: 'price-range', symbol, portfolio_id: runId, severity: 'info',
    window_start: windowStart, window_end: nowSeconds, event_time: nowSeconds, event_time_ms: Date.now(),
    evidence: JSON.stringify({ ticks: s.ticks, low: s.low, high: s.high, last: s.last }), source_topic: TOPIC, source_partition: 0, source_offset: 0,
    created_at: nowSeconds, version: Date.now(),
  }));
  await timed('clickhouse', () => clickhouse.insert({ table: 'findings', values: rows, format: 'JSONEachRow' }));
  const back = await (
    await clickhouse.query({ query: namedQuerySql('findingsByPortfolio', { portfolio: runId, from: windowStart - 60, to: nowSeconds + 60, minSeverity: 'info', limit: 1000 }), format: 'JSONEachRow' })
  ).json<{ symbol: string }>();
  await clickhouse.close();
  log(`clickhouse: inserted ${rows.length} rows into ${config.clickhouse.database}.findings in one insert; read back ${back.length}`);

  return {
    runId,
    produced: ticks.length,
    consumed,
    schemaIds,
    redisKeys,
    clickhouseRows: back.length,
    perSymbol: [...stats].map(([symbol, s]) => ({ symbol, ...s })).sort((a, b) => a.symbol.localeCompare(b.symbol)),
    seconds,
  };
}
