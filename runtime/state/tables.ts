/**
 * Shared tables (portfolios and their rules): rows of one Avro record type by key. Like Kafka Streams' GlobalKTable,
 * a table lives in a compacted topic (`<application>.table.<name>`, key = row key, value = the row as JSON, a
 * tombstone deletes): Kafka is its source of truth. Redis holds a copy, one hash per table
 * (`as:table:{<application>}:<name>`), that members read whole into memory and refresh, so processors read tables
 * synchronously. When Redis loses the copy (FLUSHALL, a failover to an empty replica), the next read rebuilds it
 * from the topic instead of serving an empty table.
 *
 * Rows are validated when written, against their schema and then the table's own rules (`TableSpec.validate`).
 */
import { randomUUID } from 'node:crypto';
import avro from 'avsc';
import type { Redis } from 'ioredis';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { topicMetadataWithLeaders } from '../engine/topics.ts';
import { sendChunks } from '../kafka/send-chunks.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { SchemaFile } from '../serde/schemas.ts';
import type { Topology } from '../topology/topology.ts';

function tableSpec(topology: Topology, name: string) {
  const spec = topology.tables?.[name];
  if (!spec)
    throw new AgentStreamsError(
      ErrorCode.USAGE,
      `Topology "${topology.application}" has no table "${name}"; it has ${Object.keys(topology.tables ?? {}).join(', ') || 'none'}.`,
    );
  return spec;
}

/**
 * Validates every row first, then replaces the table: in its topic (tombstones for the rows it no longer has), then
 * in Redis. A bad file changes nothing.
 */
export async function writeTable(
  redis: Redis,
  kafka: KafkaPort,
  topology: Topology,
  name: string,
  rows: unknown[],
  schemas: SchemaFile[],
): Promise<number> {
  const spec = tableSpec(topology, name);
  const schema = schemas.find((s) => s.subject === spec.recordType);
  if (!schema)
    throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `No schema for ${spec.recordType} in the schema folder.`);
  const type = avro.Type.forSchema(schema.schema);
  const problems: string[] = [];
  const entries: string[] = [];
  rows.forEach((row, i) => {
    const paths: string[] = [];
    // Defaults apply, as they would for a reader of the schema; what cannot be filled is reported below.
    let filled: unknown = row;
    try {
      filled = type.clone(row);
    } catch {
      // keep the row as given
    }
    if (!type.isValid(filled, { errorHook: (path) => paths.push(path.join('.') || '(root)') })) {
      problems.push(`row ${i + 1}: does not match ${spec.recordType} at ${paths.join(', ')}`);
      return;
    }
    const key = (filled as Record<string, unknown>)[spec.keyField];
    if (typeof key !== 'string' || key === '' || key.startsWith('\u0000')) {
      problems.push(`row ${i + 1}: key field "${spec.keyField}" must be a non-empty string not starting with U+0000`);
      return;
    }
    const ruleProblems = spec.validate?.(filled) ?? [];
    if (ruleProblems.length > 0) {
      problems.push(...ruleProblems.map((problem) => `row ${i + 1} (${key}): ${problem}`));
      return;
    }
    entries.push(key, JSON.stringify(filled));
  });
  if (problems.length > 0) {
    throw new AgentStreamsError(
      ErrorCode.SCHEMA_INVALID,
      `Table "${name}" was not changed:\n  - ${problems.join('\n  - ')}`,
      { details: { problems } },
    );
  }
  // Kafka first: the topic is the table. Rows the new table no longer has are deleted by tombstones.
  const topic = topology.tableTopic(name);
  await ensureTableTopic(kafka, topic, topology.replicationFactor);
  const previous = (await readTableTopic(kafka, topic)) ?? new Map<string, string>();
  const rowsByKey = new Map<string, string>();
  for (let i = 0; i < entries.length; i += 2) rowsByKey.set(entries[i]!, entries[i + 1]!);
  const messages = [
    ...[...previous.keys()].filter((k) => !rowsByKey.has(k)).map((k) => ({ key: k, value: null })),
    ...[...rowsByKey].map(([k, v]) => ({ key: k, value: v })),
  ];
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (const chunk of sendChunks(messages)) await producer.send({ topic, acks: -1, messages: chunk });
  } finally {
    await producer.disconnect();
  }
  await cacheTable(redis, topology.tableKey(name), rowsByKey);
  return rowsByKey.size;
}

/** Marks a table's Redis hash as loaded, so that an absent hash means Redis lost it (an empty table still has this). */
const LOADED_FIELD = '\u0000loaded';

async function cacheTable(redis: Redis, key: string, rows: ReadonlyMap<string, string>): Promise<void> {
  await redis
    .multi()
    .del(key)
    .hset(key, LOADED_FIELD, '1', ...[...rows].flat())
    .exec();
}

async function ensureTableTopic(kafka: KafkaPort, topic: string, replicationFactor: number | undefined): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      await admin
        .createTopics({
          waitForLeaders: false,
          topics: [
            {
              topic,
              numPartitions: 1,
              ...(replicationFactor ? { replicationFactor } : {}),
              configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
            },
          ],
        })
        .catch((error: Error & { type?: string }) => {
          if (error.type !== 'TOPIC_ALREADY_EXISTS') throw error;
        });
    }
    await topicMetadataWithLeaders(admin, [topic]);
  } finally {
    await admin.disconnect();
  }
}

/**
 * A table's rows as its topic holds them now (the latest value per key, tombstoned keys left out), or `undefined`
 * when the topic does not exist (the table was never loaded). Reads from the beginning to the end offsets taken first.
 */
export async function readTableTopic(
  kafka: KafkaPort,
  topic: string,
  timeoutMs = 60_000,
): Promise<Map<string, string> | undefined> {
  const admin = kafka.admin();
  await admin.connect();
  let ends: Map<number, number>;
  try {
    if (!(await admin.listTopics()).includes(topic)) return undefined;
    ends = new Map(
      (await admin.fetchTopicOffsets(topic))
        .filter((o) => Number(o.high) > Number(o.low))
        .map((o) => [o.partition, Number(o.high)]),
    );
  } finally {
    await admin.disconnect();
  }
  const rows = new Map<string, string>();
  if (ends.size === 0) return rows;
  const groupId = `as-table-read-${randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: 8 * 1024 * 1024,
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new AgentStreamsError(
              ErrorCode.STATE_LOST,
              `Table topic ${topic} could not be read to its end within ${timeoutMs} ms.`,
              { retriable: true },
            ),
          ),
        timeoutMs,
      );
      consumer
        .run({
          eachBatch: async ({ batch }) => {
            for (const message of batch.messages) {
              const offset = Number(message.offset);
              const end = ends.get(batch.partition);
              if (end === undefined || offset >= end) continue;
              const key = message.key?.toString('utf8') ?? '';
              if (message.value === null) rows.delete(key);
              else rows.set(key, message.value.toString('utf8'));
              if (offset >= end - 1) ends.delete(batch.partition);
            }
            if (ends.size === 0) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
    const cleanup = kafka.admin();
    await cleanup.connect();
    await cleanup.deleteGroups([groupId]).catch(() => undefined);
    await cleanup.disconnect();
  }
  return rows;
}

/**
 * Reads whole tables from Redis. A table whose Redis copy is gone (no loaded mark) is rebuilt from its topic when
 * `kafka` is given, and cached again; without `kafka`, or when the topic does not exist, it reads as empty.
 */
export async function readTables(
  redis: Redis,
  topology: Topology,
  names: string[],
  kafka?: KafkaPort,
): Promise<Map<string, Map<string, unknown>>> {
  const out = new Map<string, Map<string, unknown>>();
  if (names.length === 0) return out;
  const pipeline = redis.pipeline();
  for (const name of names) pipeline.hgetall(topology.tableKey(name));
  const results = (await pipeline.exec()) ?? [];
  for (const [i, name] of names.entries()) {
    const [error, hash] = results[i]!;
    if (error) throw error;
    let rows = new Map(Object.entries(hash as Record<string, string>));
    if (!rows.has(LOADED_FIELD) && kafka) {
      const restored = await readTableTopic(kafka, topology.tableTopic(name));
      if (restored) {
        await cacheTable(redis, topology.tableKey(name), restored);
        rows = restored;
      }
    }
    rows.delete(LOADED_FIELD);
    out.set(name, new Map([...rows].map(([k, v]) => [k, JSON.parse(v) as unknown])));
  }
  return out;
}
