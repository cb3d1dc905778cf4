/**
 * The one way connectors write to Kafka: market records as Avro in the Confluent wire format (record-name subjects,
 * so four record types share one topic), keyed by symbol, through an idempotent producer with acks=all.
 *
 * `send` never makes one round trip per record. Calls that arrive while a produce request is in flight are queued
 * and go out together in the next one (group commit), so many small HTTP requests cost few produce requests, and
 * a big batch is split so no request carries more than `maxBatchBytes`.
 *
 * Broker outages are ridden out for `kafka.outageToleranceMs` (runtime/engine/producer.ts), duplicating nothing:
 * - default: the idempotent producer repeats exactly the failed request, so the broker drops what it already had;
 * - `transactional`: each group of queued sends is one transaction, all or nothing. While the broker is away a send
 *   fails at once with a retriable `AS_BROKER_UNAVAILABLE` (nothing of it committed), so a caller can answer 503.
 */
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Message } from 'kafkajs';
import type { KafkaPort } from '../runtime/kafka/port.ts';
import { traceSend } from '../runtime/observability/tracing.ts';
import type { Config } from '../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { AvroSerde, registryClient } from '../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../runtime/serde/schemas.ts';
import {
  DEFAULT_MARKET_TOPIC,
  formatProblems,
  keysOf,
  MarketRecord,
  marketRecordNames,
  MarketSchemas,
  type MarketRecordName,
  type MarketRecordValue,
} from './market-records.ts';
import { topicMetadataWithLeaders } from '../runtime/engine/topics.ts';
import {
  ATTEMPT_RETRY,
  IdempotentProducer,
  rideOutage,
  TransactionalProducer,
  type OutageOptions,
} from '../runtime/engine/producer.ts';
import { kafkaClient } from '../runtime/kafka/client.ts';

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
  /**
   * One transaction per group of queued sends (all or nothing; readers use read_committed). `id` is the
   * transactional id: stable per instance so a restarted instance fences its predecessor; default
   * `<clientId>-<suffix>-<host>-<random>`. A consumer group `<id>.commits` records which transactions committed.
   */
  transactional?: boolean | { id?: string };
  /** Default `config.kafka.outageToleranceMs`. */
  outageToleranceMs?: number;
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
  /** False while a transactional producer waits for the broker to come back (sends then fail at once). */
  readonly available: boolean;
  /** How long the produce call in flight has been running (0 when none is): a broker that stopped answering shows here. */
  readonly busyForMs: number;
  /** A hint for callers that answer "retry later" while `available` is false. */
  readonly retryAfterMs: number;
  /** Called once if an outage outlasts `kafka.outageToleranceMs` (transactional producers; others reject sends). */
  onFailed(listener: (error: AgentStreamsError) => void): void;
  /** Idempotent; waits for queued sends. */
  close(): Promise<void>;
}

interface Pending {
  messages: Message[];
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Creates `topic` when missing (tolerating a concurrent creator) and returns its partition count. */
export async function ensureMarketTopic(
  kafka: KafkaPort,
  topic: string,
  partitions: number,
  log: (line: string) => void = () => {},
): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      await admin
        .createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: false })
        .catch((error: Error & { type?: string }) => {
          if (error.type !== 'TOPIC_ALREADY_EXISTS') throw error;
        });
      log(`created topic ${topic} with ${partitions} partitions`);
    }
    const metadata = await topicMetadataWithLeaders(admin, [topic]);
    const actual = metadata.topics[0]?.partitions.length ?? 0;
    if (actual !== partitions)
      log(`topic ${topic} exists with ${actual} partitions (asked for ${partitions}); producing to it as it is`);
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
    throw new AgentStreamsError(
      ErrorCode.CONNECTOR_OPTIONS_INVALID,
      `partitions must be a whole number >= 1, got ${wantedPartitions}.`,
    );
  }

  const marketDir = join(import.meta.dirname, '../schemas/market');
  const schemas = new MarketSchemas(marketDir);
  const registry = registryClient(config);
  if (options.register ?? true) await registerSchemas(config, registry, loadSchemas(marketDir));
  const serde = new AvroSerde(registry);
  for (const name of marketRecordNames) await serde.writerFor(MarketRecord[name]);

  const clientId = `${config.kafka.clientId}-${options.clientId ?? 'connector'}`;
  // Short kafkajs retries: the outage policy below decides how long a broker may stay away, not kafkajs' defaults.
  const kafka = kafkaClient(config, options.clientId ?? 'connector', { retry: { ...ATTEMPT_RETRY } });
  const outage: OutageOptions = { outageToleranceMs: options.outageToleranceMs ?? config.kafka.outageToleranceMs, log };
  const partitions = await rideOutage(
    `creating topic ${topic}`,
    () => ensureMarketTopic(kafka, topic, wantedPartitions, log),
    outage,
  );
  // Idempotent: a retried produce request cannot duplicate or reorder records within this producer's session.
  const txOptions = options.transactional === true ? {} : options.transactional || undefined;
  const transactionalId = txOptions
    ? (txOptions.id ?? `${clientId}-${hostname()}-${randomUUID().slice(0, 8)}`)
    : undefined;
  const idempotent = transactionalId === undefined ? new IdempotentProducer(kafka, outage) : undefined;
  const transactional =
    transactionalId !== undefined ? new TransactionalProducer(kafka, transactionalId, outage) : undefined;
  // Which transactions committed: the commit group's offset on partition 0 is the number of the last one.
  const commitGroup = `${transactionalId}.commits`;
  let transactionNumber = 0;
  const lastCommitted = async (): Promise<number> => {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchOffsets({ groupId: commitGroup, topics: [topic] });
      return Number(offsets[0]?.partitions.find((p) => p.partition === 0)?.offset ?? -1);
    } finally {
      await admin.disconnect();
    }
  };
  if (transactional) {
    transactionNumber = (await rideOutage('reading the last transaction number', lastCommitted, outage)) + 1;
    await transactional.connect();
  } else {
    await idempotent!.connect();
  }

  const stats: MarketProducerStats = { records: 0, messages: 0, requests: 0, bytes: 0 };
  const queue: Pending[] = [];
  let draining: Promise<void> | undefined;
  let closed: Promise<void> | undefined;

  const sizeOf = (m: Message): number => (m.value as Buffer).length + (typeof m.key === 'string' ? m.key.length : 0);

  /** Splits by bytes, so one request stays well under the broker's per-partition batch limit, and by count. */
  function* chunks(messages: Message[]): Generator<{ messages: Message[]; bytes: number }> {
    let start = 0;
    while (start < messages.length) {
      let end = start;
      let bytes = 0;
      while (
        end < messages.length &&
        (end === start || (bytes + sizeOf(messages[end]!) <= maxBatchBytes && end - start < maxBatchMessages))
      ) {
        bytes += sizeOf(messages[end]!);
        end += 1;
      }
      yield { messages: messages.slice(start, end), bytes };
      start = end;
    }
  }

  const failed = (error: unknown, records: number): unknown =>
    error instanceof AgentStreamsError
      ? error
      : new AgentStreamsError(
          ErrorCode.PRODUCE_FAILED,
          `Producing ${records} records to ${topic} failed: ${(error as Error).message}.`,
          { cause: error, details: { topic, records } },
        );

  let producingSince: number | undefined;
  async function produce(messages: Message[]): Promise<void> {
    producingSince = Date.now();
    try {
      await produceNow(messages);
    } finally {
      producingSince = undefined;
    }
  }

  async function produceNow(messages: Message[]): Promise<void> {
    if (transactional) {
      const number = transactionNumber;
      transactionNumber += 1;
      let requests = 0;
      let bytes = 0;
      try {
        await transactional.run(
          async (txn) => {
            requests = 0;
            bytes = 0;
            for (const chunk of chunks(messages)) {
              await txn.send({ topic, acks: -1, messages: chunk.messages });
              requests += 1;
              bytes += chunk.bytes;
            }
            await txn.sendOffsets({
              consumerGroupId: commitGroup,
              topics: [{ topic, partitions: [{ partition: 0, offset: String(number) }] }],
            });
          },
          async () => (await lastCommitted()) >= number,
        );
      } catch (error) {
        throw failed(error, messages.length);
      }
      stats.requests += requests;
      stats.messages += messages.length;
      stats.bytes += bytes;
      return;
    }
    for (const chunk of chunks(messages)) {
      try {
        await idempotent!.send({ topic, messages: chunk.messages });
      } catch (error) {
        throw failed(error, chunk.messages.length);
      }
      stats.requests += 1;
      stats.messages += chunk.messages.length;
      stats.bytes += chunk.bytes;
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
      throw new AgentStreamsError(ErrorCode.RECORD_INVALID, `Not a valid ${name}: ${formatProblems(problems)}.`, {
        details: { recordType: name, problems },
      });
    }
    const record = value as MarketRecordValue[MarketRecordName];
    let encoded: Buffer;
    try {
      encoded = serde.encode(MarketRecord[name], record);
    } catch (error) {
      // Valid against schemas/market yet not against the registry's latest: the two have drifted.
      throw new AgentStreamsError(
        ErrorCode.RECORD_INVALID,
        `${name} does not match the registered schema: ${(error as Error).message}`,
        {
          cause: error,
          details: { recordType: name, problems: [{ path: pathPrefix, message: (error as Error).message }] },
        },
      );
    }
    if (encoded.length > maxRecordBytes) {
      const problem = {
        path: pathPrefix,
        message: `encodes to ${encoded.length} bytes, over the ${maxRecordBytes}-byte record limit`,
      };
      throw new AgentStreamsError(ErrorCode.RECORD_INVALID, `${name} is too large: ${problem.message}.`, {
        details: { recordType: name, problems: [problem] },
      });
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
    get available() {
      return transactional ? transactional.state === 'ready' : !idempotent!.clock.down;
    },
    get busyForMs() {
      return producingSince === undefined ? 0 : Date.now() - producingSince;
    },
    retryAfterMs: transactional?.retryAfterMs ?? 2000,
    onFailed(listener) {
      transactional?.onFailed(listener);
    },
    encodeTrusted(name, value) {
      stats.records += 1;
      return serde.encode(MarketRecord[name], value);
    },
    send(messages) {
      if (closed)
        return Promise.reject(new AgentStreamsError(ErrorCode.PRODUCE_FAILED, `The producer for ${topic} is closed.`));
      if (messages.length === 0) return Promise.resolve();
      // Traced: one producer span per send, child of the caller's context (an HTTP request, the feed), and every
      // message carries it (docs/tracing.md).
      const traced = traceSend(topic, messages, { clientId });
      const sent = new Promise<void>((resolve, reject) => {
        queue.push({ messages: traced.messages, resolve, reject });
        draining ??= drain();
      });
      sent.then(
        () => traced.settle(),
        (error: unknown) => traced.settle(error),
      );
      return sent;
    },
    close() {
      closed ??= (async () => {
        while (draining) await draining;
        await (transactional ?? idempotent!).disconnect();
      })();
      return closed;
    },
  };
}
