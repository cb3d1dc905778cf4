/**
 * What the @confluentinc/kafka-javascript producer, consumer and admin adapters share: loading the optional library,
 * the librdkafka configuration built from our settings (brokers, client id, TLS, SASL, retries, logging), and the
 * translation of its errors into the kafkajs shapes the runtime recognises (`isFenced`, `isBrokerOutage`).
 */
import { createRequire } from 'node:module';
import { logLevel as KafkaLogLevel } from 'kafkajs';
import type { Config } from '../../config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../errors.ts';
import { kafkaLogCreator } from '../../observability/log.ts';
import type { KafkaClientOptions } from '../client.ts';
import type { ClientSecurity } from '../platformatic.ts';

export type { ClientSecurity };

export interface ClientContext {
  config: Config;
  clientId: string;
  options: KafkaClientOptions;
  security: ClientSecurity;
}

/** librdkafka properties: strings, numbers, booleans and the callbacks the library takes (rebalance_cb). */
export type RdConfig = Record<string, unknown>;

/** The parts of the library's API the adapters use (its own typings are not imported: it is optional). */
export interface KafkaJSLogger {
  info(message: string, extra?: object): void;
  error(message: string, extra?: object): void;
  warn(message: string, extra?: object): void;
  debug(message: string, extra?: object): void;
  namespace(): KafkaJSLogger;
  setLogLevel(level: number): void;
}

export interface RdTopicPartitionOffset {
  topic: string;
  partition: number;
  offset: number;
  metadata?: string | null;
}

export interface RdError extends Error {
  code?: number;
  isFatal?: boolean;
  isRetriable?: boolean;
  retriable?: boolean;
  fatal?: boolean;
  abortable?: boolean;
  type?: string;
}

export interface RdLowLevelConsumer {
  connect(options: object | null, cb: (error: RdError | null) => void): void;
  disconnect(cb: (error: RdError | null) => void): void;
  getClient(): unknown;
}

export interface RdLowLevelProducer {
  connect(options: object | null, cb: (error: RdError | null) => void): void;
  disconnect(timeout: number, cb: (error: RdError | null) => void): void;
  getMetadata(
    options: { allTopics?: boolean; timeout?: number },
    cb: (error: RdError | null, metadata: RdMetadata) => void,
  ): void;
  sendOffsetsToTransaction(
    offsets: RdTopicPartitionOffset[],
    consumer: RdLowLevelConsumer,
    timeout: number,
    cb: (error: RdError | null) => void,
  ): void;
  on(event: string, listener: (...args: never[]) => void): void;
}

export interface RdMetadata {
  orig_broker_id: number;
  brokers: Array<{ id: number; host: string; port: number }>;
}

export interface ConfluentLibrary {
  KafkaJS: {
    Kafka: new (config: RdConfig) => {
      producer(config: RdConfig): unknown;
      consumer(config: RdConfig): unknown;
      admin(config?: RdConfig): unknown;
    };
  };
  KafkaConsumer: new (config: RdConfig, topicConfig?: RdConfig) => RdLowLevelConsumer;
  Producer: new (config: RdConfig, topicConfig?: RdConfig) => RdLowLevelProducer;
  CODES: { ERRORS: Record<string, number> };
}

let library: ConfluentLibrary | undefined;

/** The library, loaded at first use: it is an optional dependency, built from source. */
export function confluentLibrary(): ConfluentLibrary {
  if (library) return library;
  try {
    library = createRequire(import.meta.url)('@confluentinc/kafka-javascript') as ConfluentLibrary;
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.CONFIG_INVALID,
      `AS_KAFKA_CLIENT=confluent needs the optional package @confluentinc/kafka-javascript, which could not be loaded (${(error as Error).message.split('\n')[0]}): install it with \`CKJS_LINKING=dynamic npm install --include=optional @confluentinc/kafka-javascript\` (it builds librdkafka against the system's OpenSSL, zlib, zstd, curl and SASL), or choose AS_KAFKA_CLIENT=kafkajs.`,
      { cause: error },
    );
  }
  return library;
}

/** Whether the optional library can be loaded here (tests skip without it). */
export function confluentAvailable(): boolean {
  try {
    confluentLibrary();
    return true;
  } catch {
    return false;
  }
}

/** A kafkajs option this adapter cannot honour: refused, naming it, rather than dropped. */
export function unsupported(what: string, why: string): AgentStreamsError {
  return new AgentStreamsError(
    ErrorCode.CONFIG_INVALID,
    `AS_KAFKA_CLIENT=confluent: ${what} is not supported (${why}); use AS_KAFKA_CLIENT=kafkajs for it.`,
  );
}

/** Refuses every key of `given` outside `known`, naming it. */
export function refuseUnknown(what: string, given: object | undefined, known: readonly string[]): void {
  for (const [key, value] of Object.entries(given ?? {})) {
    if (value === undefined || known.includes(key)) continue;
    throw unsupported(`${what} option "${key}"`, 'this adapter does not map it to librdkafka');
  }
}

const saslMechanisms: Record<string, string> = {
  plain: 'PLAIN',
  'scram-sha-256': 'SCRAM-SHA-256',
  'scram-sha-512': 'SCRAM-SHA-512',
};

function pem(value: unknown, what: string): string {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (Array.isArray(value)) return value.map((v) => pem(v, what)).join('\n');
  throw unsupported(`a TLS ${what} that is not PEM text`, 'librdkafka takes PEM strings');
}

/** Brokers, TLS and SASL as librdkafka properties (`ssl.*.pem`, `sasl.*`). */
function securityConfig(security: ClientSecurity): RdConfig {
  const out: RdConfig = {};
  const { tls, sasl } = security;
  if (sasl) {
    const mechanism = saslMechanisms[sasl.mechanism];
    if (!mechanism) throw unsupported(`SASL mechanism ${sasl.mechanism}`, 'only plain and scram are adapted');
    const { username, password } = sasl as { username: string; password: string };
    out['sasl.mechanisms'] = mechanism;
    out['sasl.username'] = username;
    out['sasl.password'] = password;
  }
  out['security.protocol'] = tls ? (sasl ? 'sasl_ssl' : 'ssl') : sasl ? 'sasl_plaintext' : 'plaintext';
  if (tls) {
    if (tls.ca !== undefined) out['ssl.ca.pem'] = pem(tls.ca, 'CA certificate');
    if (tls.cert !== undefined) out['ssl.certificate.pem'] = pem(tls.cert, 'client certificate');
    if (tls.key !== undefined) out['ssl.key.pem'] = pem(tls.key, 'client key');
  }
  return out;
}

/** kafkajs log level → the library's logger level (same numbers: NOTHING 0 … DEBUG 5). */
function logger(level: number, clientId: string): KafkaJSLogger {
  const write = kafkaLogCreator()(level);
  let current = level;
  const at =
    (entryLevel: number) =>
    (message: string, extra?: object): void => {
      if (current < entryLevel) return;
      const {
        fac,
        name,
        timestamp: _t,
        ...rest
      } = (extra ?? {}) as { fac?: string; name?: string; timestamp?: unknown };
      write({
        namespace: `librdkafka${fac ? `:${fac}` : ''}`,
        level: entryLevel,
        label: KafkaLogLevel[entryLevel] ?? 'INFO',
        log: { timestamp: new Date().toISOString(), message, clientId: name ?? clientId, ...rest },
      });
    };
  const self: KafkaJSLogger = {
    error: at(KafkaLogLevel.ERROR),
    warn: at(KafkaLogLevel.WARN),
    info: at(KafkaLogLevel.INFO),
    debug: at(KafkaLogLevel.DEBUG),
    namespace: () => self,
    setLogLevel: (l: number) => {
      current = l;
    },
  };
  return self;
}

/**
 * The `kafkaJS` block and librdkafka properties every client gets. kafkajs' `retry.retries`/`initialRetryTime`/
 * `maxRetryTime` become librdkafka's `retries`/`retry.backoff.ms`/`retry.backoff.max.ms` (in the library's mapping);
 * `requestTimeout` is `socket.timeout.ms`, `connectionTimeout` `socket.connection.setup.timeout.ms`; the log goes
 * to the process logger at the client's level (warnings by default, as with kafkajs).
 */
export function baseConfig(
  context: ClientContext,
  retry: { retries?: number; initialRetryTime?: number; maxRetryTime?: number } | undefined,
): { kafkaJS: RdConfig; rd: RdConfig } {
  const { config, clientId, options, security } = context;
  refuseUnknown('client', options, ['retry', 'connectionTimeout', 'requestTimeout', 'logLevel']);
  const merged = { ...options.retry, ...retry };
  refuseUnknown('retry', merged, ['retries', 'initialRetryTime', 'maxRetryTime']);
  const level = options.logLevel ?? KafkaLogLevel.WARN;
  const id = `${config.kafka.clientId}-${clientId}`;
  return {
    kafkaJS: {
      brokers: config.kafka.brokers,
      clientId: id,
      retry: merged,
      logLevel: level,
      logger: logger(level, id),
      ...(options.requestTimeout !== undefined ? { requestTimeout: options.requestTimeout } : {}),
      ...(options.connectionTimeout !== undefined ? { connectionTimeout: options.connectionTimeout } : {}),
    },
    rd: securityConfig(security),
  };
}

/** The same settings as plain librdkafka properties, for the library's low-level clients. */
export function lowLevelConfig(context: ClientContext): RdConfig {
  const { config, clientId, options, security } = context;
  return {
    'bootstrap.servers': config.kafka.brokers.join(','),
    'client.id': `${config.kafka.clientId}-${clientId}`,
    log_level: (options.logLevel ?? KafkaLogLevel.WARN) === KafkaLogLevel.NOTHING ? 0 : 4,
    ...(options.requestTimeout !== undefined ? { 'socket.timeout.ms': options.requestTimeout } : {}),
    ...securityConfig(security),
  };
}

/** librdkafka's local errors (negative codes) that mean the broker is away or did not answer in time. */
const CONNECTION_ERRORS = new Set(['_TRANSPORT', '_ALL_BROKERS_DOWN', '_RESOLVE', '_DESTROY_BROKER', '_NODE_UPDATE']);
const TIMEOUT_ERRORS = new Set(['_TIMED_OUT', '_MSG_TIMED_OUT', '_TIMED_OUT_QUEUE', '_WAIT_COORD', '_IN_PROGRESS']);
const FENCED = new Set(['_FENCED', 'PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH', 'INVALID_PRODUCER_ID_MAPPING']);

/** librdkafka's abbreviations of Kafka error names, spelled out as kafkajs and the Java client spell them. */
const KAFKA_NAMES: Record<string, string> = {
  UNKNOWN_TOPIC_OR_PART: 'UNKNOWN_TOPIC_OR_PARTITION',
  MSG_SIZE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  INVALID_MSG: 'CORRUPT_MESSAGE',
  INVALID_MSG_SIZE: 'INVALID_FETCH_SIZE',
  TOPIC_EXCEPTION: 'INVALID_TOPIC_EXCEPTION',
  STALE_CTRL_EPOCH: 'STALE_CONTROLLER_EPOCH',
};

let names: Map<number, string> | undefined;
let kafkajsRetriable: Map<number, boolean> | undefined;

/** Whether kafkajs (the reference) retries a Kafka error code: the runtime's retries read `retriable` as it sets it. */
function retriableCode(code: number): boolean | undefined {
  kafkajsRetriable ??= new Map(
    (
      createRequire(import.meta.url)('kafkajs/src/protocol/error.js') as {
        errorCodes: Array<{ code: number; retriable: boolean }>;
      }
    ).errorCodes.map((e) => [e.code, e.retriable]),
  );
  return kafkajsRetriable.get(code);
}

/** `ERR_PRODUCER_FENCED` → `PRODUCER_FENCED`, `ERR__FENCED` → `_FENCED` (librdkafka's names, prefix dropped). */
function codeName(code: number): string | undefined {
  if (!names) {
    names = new Map();
    for (const [name, value] of Object.entries(confluentLibrary().CODES.ERRORS))
      if (!names.has(value)) {
        const short = name.replace(/^ERR_/, '');
        names.set(value, KAFKA_NAMES[short] ?? short);
      }
  }
  return names.get(code);
}

/**
 * A library error as the kafkajs error the runtime knows. A fenced producer (the broker's PRODUCER_FENCED or
 * INVALID_PRODUCER_EPOCH, or librdkafka's fatal `_FENCED`, also when it surfaces as `_FATAL` with "fenced" in its
 * message) becomes `KafkaJSProtocolError` type `PRODUCER_FENCED`/… (what `isFenced` reads); a broker error answer a
 * `KafkaJSProtocolError` with the Kafka error name as `type` (what the outage check reads: NOT_COORDINATOR, …); a
 * lost connection `KafkaJSConnectionError`, a timeout `KafkaJSRequestTimeoutError`. The original is the `cause`.
 */
export function kafkajsError(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof AgentStreamsError) return error;
  const code = (error as RdError).code;
  if (typeof code !== 'number') return error;
  let name = codeName(code);
  if (name === undefined) return error;
  if ((name === '_FATAL' || name === '_STATE') && /fenced/i.test(error.message)) name = 'PRODUCER_FENCED';
  let mapped: Error & { type?: string; retriable?: boolean; code?: number };
  if (FENCED.has(name)) {
    mapped = new Error(`${name === '_FENCED' ? 'PRODUCER_FENCED' : name}: ${error.message}`, { cause: error });
    mapped.name = 'KafkaJSProtocolError';
    mapped.type = name === '_FENCED' ? 'PRODUCER_FENCED' : name;
    mapped.retriable = false;
  } else if (CONNECTION_ERRORS.has(name)) {
    mapped = new Error(`${name}: ${error.message}`, { cause: error });
    mapped.name = 'KafkaJSConnectionError';
    mapped.retriable = true;
  } else if (TIMEOUT_ERRORS.has(name)) {
    mapped = new Error(`${name}: ${error.message}`, { cause: error });
    mapped.name = 'KafkaJSRequestTimeoutError';
    mapped.retriable = true;
  } else if (!name.startsWith('_')) {
    mapped = new Error(`${name}: ${error.message}`, { cause: error });
    mapped.name = 'KafkaJSProtocolError';
    mapped.type = name;
    mapped.retriable = retriableCode(code) ?? Boolean((error as RdError).retriable ?? (error as RdError).isRetriable);
  } else {
    return error;
  }
  mapped.code = code;
  return mapped;
}

/** Runs `fn`, rethrowing a library error in its kafkajs shape. */
export async function translated<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw kafkajsError(error);
  }
}
