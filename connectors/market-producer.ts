/**
 * The one way connectors write to Kafka: market records as Avro in the Confluent wire format (record-name subjects,
 * so four record types share one topic), keyed by symbol, through an idempotent producer with acks=all.
 *
 * `send` never makes one round trip per record. Calls that arrive while a produce request is in flight are queued
 * and go out together in the next one (group commit), so many small HTTP requests cost few produce requests, and
 * a big batch is split so no request carries more than `maxBatchBytes`.
 */
import { join } from 'node:path';
import { Kafka, logLevel, type Message, type Producer } from 'kafkajs';
import type { Config } from '../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { AvroSerde, registryClient } from '../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../runtime/serde/schemas.ts';
import { DEFAULT_MARKET_TOPIC, formatProblems, keysOf, MarketRecord, marketRecordNames, MarketSchemas, type MarketRecordName, type MarketRecordValue } from './market-records.ts';
import { topicMetadataWithLeaders } from '../runtime/engine/topics.ts';

export interface MarketProducerOptions {
  /** Default `market.events`. */
  topic?: string;
  /** Partitions to create the topic with when it does not exist; an existing topic keeps its own. Default 6. */
  partitions?: number;
  /** Suffix of the Kafka client id, e.g. `feed`. */
  clientId?: string;
  /**
   * Register schemas/market with the registry first (BACKWARD-checked, idempotent). Default true; false only looks
   * the subjects up, for deployments where schemas are registered by a release step.
   */
  register?: boolean;
  /** Upper bound on the value bytes of one produce request. Default 512 KiB, half the broker's default batch limit. */
  maxBatchBytes?: number;
  /**
   * Upper bound on the records of one produce request. Default 2000: kafkajs groups a request's records by partition
   * in time quadratic in their number, so beyond a few thousand bigger requests get slower, not faster (measured).
   */
  maxBatchMessages?: number;
  /** Largest encoded record accepted. Default 900 000 bytes, under the broker's default message.max.bytes. */
  maxRecordBytes?: number;
  log?: (line: string) => void;
}

export interface MarketProducerStats {
  records: number;
  messages: number;
  requests: number;
  bytes: number;
}

export interface MarketProducer {
  readonly topic: string;
  /** Partitions of the topic as it exists. */
  readonly partitions: number;
  readonly schemas: MarketSchemas;
  readonly stats: Readonly<MarketProducerStats>;
  /**
   * Validates (every problem, with field paths) and encodes one record into its Kafka messages (one per key).
   * Throws `AS_RECORD_INVALID` with `details.problems`; nothing is queued.
   */
  encode(name: MarketRecordName, value: unknown, pathPrefix?: string): Message[];
  /** `encode` without the keys: the Confluent-framed Avro value, for callers that key records themselves. */
  encodeValue(name: MarketRecordName, value: unknown, pathPrefix?: string): Buffer;
  /**
   * For values built by our own code (the synthetic feed): skips the field-by-field report, which costs as much as
   * encoding; the serde still refuses a value that does not match the schema.
   */
  encodeTrusted(name: MarketRecordName, value: MarketRecordValue[MarketRecordName]): Buffer;
  /** Produces `messages`; resolves once all are acknowledged by all in-sync replicas. */
  send(messages: Message[]): Promise<void>;
  /** Idempotent; waits for queued sends. */
  close(): Promise<void>;
}

interface Pending {
  messages: Message[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Creates `topic` when missing (tolerating a concurrent creator) and returns its partition count. */
export async function ensureMarketTopic(kafka: Kafka, topic: string, partitions: number, log: (line: string) => void = () => {}): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: false }).catch((error: Error & { type?: string }) => {
        if (error.type !== 'TOPIC_ALREADY_EXISTS') throw error;
      });
      log(`created topic ${topic} with ${partitions} partitions`);
    }
    const metadata = await topicMetadataWithLeaders(admin, [topic]);
    const actual = metadata.topics[0]?.partitions.length ?? 0;
    if (actual !== partitions) log(`topic ${topic} exists with ${actual} partitions (asked for ${partitions}); producing to it as it is`);
    return actual;
  } finally {
    await admin.disconnect();
  }
}

export async function openMarketProducer(config: Config, options: MarketProducerOptions = {}): Promise<MarketProducer> {
  const topic = options.topic ?? DEFAULT_MARKET_TOPIC;
  const wantedPartitions = options.partitions ?? 6;
  const maxBatchBytes = options.maxBatchBytes ?? 512 * 1024;
  const maxBatchMessages = options.maxBatchMessages ?? 2000;
  const maxRecordBytes = options.maxRecordBytes ?? 900_000;
  const log = options.log ?? (() => {});
  if (!Number.isInteger(wantedPartitions) || wantedPartitions < 1) {
    throw new AgentStreamsError(ErrorCode.CONNECTOR_OPTIONS_INVALID, `partitions must be a whole number >= 1, got ${wantedPartitions}.`);
  }

  const marketDir = join(import.meta.dirname, '../schemas/market');
  const schemas = new MarketSchemas(marketDir);
  const registry = registryClient(config);
  if (options.register ?? true) await registerSchemas(config, registry, loadSchemas(marketDir));
  const serde = new AvroSerde(registry);
  for (const name of marketRecordNames) await serde.writerFor(MarketRecord[name]);

  const kafka = new Kafka({ clientId: `${config.kafka.clientId}-${options.clientId ?? 'connector'}`, brokers: config.kafka.brokers, logLevel: logLevel.NOTHING });
  const partitions = await ensureMarketTopic(kafka, topic, wantedPartitions, log);
  // Idempotent: a retried produce request cannot duplicate or reorder records within this producer's session.
  const producer: Producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();

  const stats: MarketProducerStats = { records: 0, messages: 0, requests: 0, bytes: 0 };
  const queue: Pending[] = [];
  let draining: Promise<void> | undefined;
  let closed: Promise<void> | undefined;

  const sizeOf = (m: Message): number => (m.value as Buffer).length + (typeof m.key === 'string' ? m.key.length : 0);

  async function produce(messages: Message[]): Promise<void> {
    // Split by bytes, so one request stays well under the broker's per-partition batch limit, and by count.
    let start = 0;
    while (start < messages.length) {
      let end = start;
      let bytes = 0;
      while (end < messages.length && (end === start || (bytes + sizeOf(messages[end]!) <= maxBatchBytes && end - start < maxBatchMessages))) {
        bytes += sizeOf(messages[end]!);
        end += 1;
      }
      try {
        await producer.send({ topic, acks: -1, messages: messages.slice(start, end) });
      } catch (error) {
        throw new AgentStreamsError(
          ErrorCode.PRODUCE_FAILED,
          `Producing ${end - start} records to ${topic} failed after the client's retries: ${(error as Error).message}. Records of this batch may be partly written; retrying is safe for consumers that deduplicate on record ids.`,
          { retriable: true, cause: error, details: { topic, records: end - start } },
        );
      }
      stats.requests += 1;
      stats.messages += end - start;
      stats.bytes += bytes;
      start = end;
    }
  }

  async function drain(): Promise<void> {
    while (queue.length > 0) {
      const taken = queue.splice(0, queue.length);
      try {
        await produce(taken.flatMap((p) => p.messages));
        for (const p of taken) p.resolve();
      } catch (error) {
        for (const p of taken) p.reject(error);
      }
    }
    draining = undefined;
  }

  function encodeValue(name: MarketRecordName, value: unknown, pathPrefix = ''): Buffer {
    const problems = schemas.validate(name, schemas.normalize(name, value), pathPrefix);
    if (problems.length > 0) {
      throw new AgentStreamsError(ErrorCode.RECORD_INVALID, `Not a valid ${name}: ${formatProblems(problems)}.`, { details: { recordType: name, problems } });
    }
    const record = value as MarketRecordValue[MarketRecordName];
    let encoded: Buffer;
    try {
      encoded = serde.encode(MarketRecord[name], record);
    } catch (error) {
      // Valid against schemas/market yet not against the registry's latest: the two have drifted.
      throw new AgentStreamsError(ErrorCode.RECORD_INVALID, `${name} does not match the registered schema: ${(error as Error).message}`, {
        cause: error,
        details: { recordType: name, problems: [{ path: pathPrefix, message: (error as Error).message }] },
      });
    }
    if (encoded.length > maxRecordBytes) {
      const problem = { path: pathPrefix, message: `encodes to ${encoded.length} bytes, over the ${maxRecordBytes}-byte record limit` };
      throw new AgentStreamsError(ErrorCode.RECORD_INVALID, `${name} is too large: ${problem.message}.`, { details: { recordType: name, problems: [problem] } });
    }
    stats.records += 1;
    return encoded;
  }

  return {
    topic,
    partitions,
    schemas,
    stats,
    encode(name, value, pathPrefix = '') {
      const encoded = encodeValue(name, value, pathPrefix);
      return keysOf(name, value as MarketRecordValue[MarketRecordName]).map((key) => ({ key, value: encoded }));
    },
    encodeValue,
    encodeTrusted(name, value) {
      stats.records += 1;
      return serde.encode(MarketRecord[name], value);
    },
    send(messages) {
      if (closed) return Promise.reject(new AgentStreamsError(ErrorCode.PRODUCE_FAILED, `The producer for ${topic} is closed.`));
      if (messages.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        queue.push({ messages, resolve, reject });
        draining ??= drain();
      });
    },
    close() {
      closed ??= (async () => {
        while (draining) await draining;
        await producer.disconnect();
      })();
      return closed;
    },
  };
}
