/**
 * The smoke pipeline: the whole stack exercised once, end to end. It registers the market schemas, produces
 * Avro price ticks to Kafka, consumes and decodes them in a consumer group, keeps per-symbol state in Redis
 * (one pipelined round trip per batch) and writes one row per symbol to ClickHouse (one insert). The market
 * fleet replaces it as the demo; it stays as the quickest proof that a machine's stack works.
 */
import { join } from 'node:path';
import { kafkaClient } from '../runtime/kafka/client.ts';
import { Redis } from 'ioredis';
import type { Config } from '../runtime/config/index.ts';
import { AvroSerde, registryClient } from '../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../runtime/serde/schemas.ts';
import { openClickHouse } from '../sinks/clickhouse/client.ts';
import { migrateDatabase } from '../sinks/clickhouse/schema.ts';

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

/** The smoke check's own table: scratch rows that no fleet query reads. It creates it itself (SQL for 18.16 and current ClickHouse). */
export const SMOKE_TABLE = 'smoke_price_ranges';
const SMOKE_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${SMOKE_TABLE} (
  run_id String, symbol String, ticks UInt32, low Float64, high Float64, last Float64,
  window_start DateTime('UTC'), window_end DateTime('UTC'), created_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(created_at) ORDER BY (run_id, symbol)`;
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
  const registered = await timed('register', () =>
    registerSchemas(config, registry, loadSchemas(join(root, 'schemas'))),
  );
  const schemaIds = Object.fromEntries(registered.map((r) => [r.subject, r.id]));
  log(`registry: ${registered.map((r) => `${r.subject} → id ${r.id}`).join(', ')}`);

  const kafka = kafkaClient(config, 'smoke');
  const admin = kafka.admin();
  await admin.connect();
  const existing = await admin.listTopics();
  if (!existing.includes(TOPIC))
    await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 6 }], waitForLeaders: true });
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
  await timed('produce', () =>
    producer.send({
      topic: TOPIC,
      acks: -1,
      messages: ticks.map((t) => ({ key: t.symbol, value: serde.encode(TICK, t) })),
    }),
  );
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
  const redisKeys = (await redis.keys(`smoke:{${runId}}:*`)).length;
  await redis.quit();
  log(
    `consumer group ${runId}-group: decoded ${consumed} events; per-symbol state in Redis under smoke:{${runId}}:* (${redisKeys} keys)`,
  );

  // One ClickHouse insert for the run: a row per symbol, into the smoke check's own table (never `findings`: smoke
  // rows would show up in `agent-streams findings` next to the fleet's).
  const clickhouse = openClickHouse(config);
  const nowSeconds = Math.floor(Date.now() / 1000);
  const windowStart = Math.floor(start / 1000);
  await clickhouse.command({ query: SMOKE_TABLE_DDL });
  const rows = [...stats].map(([symbol, s]) => ({
    run_id: runId,
    symbol,
    ticks: s.ticks,
    low: s.low,
    high: s.high,
    last: s.last,
    window_start: windowStart,
    window_end: nowSeconds,
    created_at: nowSeconds,
  }));
  await timed('clickhouse', () => clickhouse.insert({ table: SMOKE_TABLE, values: rows, format: 'JSONEachRow' }));
  const back =
    await // A literal, not a query parameter: ClickHouse 18.16 has no {name:Type} parameters (the run id is [a-z0-9-]).
    (
      await clickhouse.query({
        query: `SELECT symbol FROM ${SMOKE_TABLE} FINAL WHERE run_id = '${runId.replace(/[\\']/g, '')}'`,
        format: 'JSONEachRow',
      })
    ).json<{ symbol: string }>();
  await clickhouse.close();
  log(
    `clickhouse: inserted ${rows.length} rows into ${config.clickhouse.database}.${SMOKE_TABLE} in one insert; read back ${back.length}`,
  );

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
