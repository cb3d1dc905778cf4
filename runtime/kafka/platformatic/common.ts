/**
 * What the @platformatic/kafka producer, consumer and admin adapters share: the client options built from our
 * settings, the translation of its errors into the kafkajs shapes the runtime recognises, and its log events.
 */
import type { ConnectionOptions } from 'node:tls';
import { GenericError, type BaseOptions, type SASLOptions as PltSASLOptions } from '@platformatic/kafka';
import type { SASLOptions } from 'kafkajs';
import type { Config } from '../../config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../errors.ts';
import { processLogger } from '../../observability/log.ts';
import type { KafkaClientOptions } from '../client.ts';

export interface ClientSecurity {
  sasl: SASLOptions | undefined;
  tls: ConnectionOptions | undefined;
}

export interface ClientContext {
  config: Config;
  clientId: string;
  options: KafkaClientOptions;
  security: ClientSecurity;
}

/** A kafkajs option this adapter cannot honour: refused, naming it, rather than dropped. */
export function unsupported(what: string, why: string): AgentStreamsError {
  return new AgentStreamsError(
    ErrorCode.CONFIG_INVALID,
    `AS_KAFKA_CLIENT=platformatic: ${what} is not supported (${why}); use AS_KAFKA_CLIENT=kafkajs for it.`,
  );
}

const saslMechanisms = { plain: 'PLAIN', 'scram-sha-256': 'SCRAM-SHA-256', 'scram-sha-512': 'SCRAM-SHA-512' } as const;

function sasl(security: ClientSecurity): PltSASLOptions | undefined {
  if (!security.sasl) return undefined;
  const { mechanism } = security.sasl;
  const mapped = saslMechanisms[mechanism as keyof typeof saslMechanisms];
  if (!mapped) throw unsupported(`SASL mechanism ${mechanism}`, 'only plain and scram are adapted');
  const { username, password } = security.sasl as { username: string; password: string };
  return { mechanism: mapped, username, password };
}

/**
 * The options every client gets. kafkajs' `retry.retries` and `retry.initialRetryTime` become platformatic's
 * `retries` and `retryDelay` (a fixed delay: platformatic has no exponential backoff); `requestTimeout` and
 * `connectionTimeout` keep their meaning.
 */
export function baseOptions(
  context: ClientContext,
  retry: { retries?: number; initialRetryTime?: number } | undefined,
): BaseOptions {
  const { config, clientId, options, security } = context;
  const merged = { ...options.retry, ...retry };
  const pltSasl = sasl(security);
  return {
    clientId: `${config.kafka.clientId}-${clientId}`,
    bootstrapBrokers: config.kafka.brokers,
    retries: merged.retries ?? 5,
    retryDelay: merged.initialRetryTime ?? 300,
    ...(options.requestTimeout !== undefined ? { requestTimeout: options.requestTimeout } : {}),
    ...(options.connectionTimeout !== undefined ? { connectTimeout: options.connectionTimeout } : {}),
    ...(security.tls ? { tls: security.tls } : {}),
    ...(pltSasl ? { sasl: pltSasl } : {}),
  };
}

/** Kafka protocol errors (platformatic's `apiId`) that mean "try again": what runtime/engine/producer.ts rides out. */
interface PltErrorLike {
  code?: string;
  apiId?: string;
  canRetry?: boolean;
  errors?: unknown[];
  cause?: unknown;
  message?: string;
}

function walk(error: unknown, visit: (e: PltErrorLike) => boolean, depth = 0): boolean {
  if (!error || typeof error !== 'object' || depth > 8) return false;
  const e = error as PltErrorLike;
  if (visit(e)) return true;
  for (const inner of e.errors ?? []) if (walk(inner, visit, depth + 1)) return true;
  return walk(e.cause, visit, depth + 1);
}

/** The first Kafka error name (`PRODUCER_FENCED`, …) in a platformatic error tree. */
export function protocolErrorOf(error: unknown): { apiId: string; canRetry: boolean } | undefined {
  let found: { apiId: string; canRetry: boolean } | undefined;
  walk(error, (e) => {
    if (typeof e.apiId === 'string') found = { apiId: e.apiId, canRetry: Boolean(e.canRetry) };
    return found !== undefined;
  });
  return found;
}

function hasCode(error: unknown, code: string): boolean {
  return walk(error, (e) => e.code === code);
}

/**
 * A platformatic error as the kafkajs error the runtime knows: a Kafka error answer becomes `KafkaJSProtocolError`
 * with `type` (so `isFenced` and the outage checks read it), a lost connection `KafkaJSConnectionError`, a timeout
 * `KafkaJSRequestTimeoutError`. The original is the `cause`. Anything else (ours, or a usage error) is returned as is.
 */
export function kafkajsError(error: unknown): unknown {
  if (!(error instanceof Error) || !GenericError.isGenericError(error)) return error;
  const protocol = protocolErrorOf(error);
  const detail = (): string => {
    const messages: string[] = [];
    walk(error, (e) => {
      if (e !== error && e.message && !messages.includes(e.message)) messages.push(e.message);
      return false;
    });
    return messages.length > 0 ? `${error.message} (${messages.slice(0, 3).join('; ')})` : error.message;
  };
  let mapped: Error & { type?: string; retriable?: boolean };
  if (protocol) {
    mapped = new Error(`${protocol.apiId}: ${detail()}`, { cause: error });
    mapped.name = 'KafkaJSProtocolError';
    mapped.type = protocol.apiId;
    mapped.retriable = protocol.canRetry;
  } else if (hasCode(error, 'PLT_KFK_TIMEOUT')) {
    mapped = new Error(detail(), { cause: error });
    mapped.name = 'KafkaJSRequestTimeoutError';
    mapped.retriable = true;
  } else if (hasCode(error, 'PLT_KFK_NETWORK')) {
    mapped = new Error(detail(), { cause: error });
    mapped.name = 'KafkaJSConnectionError';
    mapped.retriable = true;
  } else if (hasCode(error, 'PLT_KFK_AUTHENTICATION')) {
    mapped = new Error(detail(), { cause: error });
    mapped.name = 'KafkaJSSASLAuthenticationError';
    mapped.retriable = false;
  } else {
    return error;
  }
  return mapped;
}

/** Runs `fn`, rethrowing a platformatic error in its kafkajs shape. */
export async function translated<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw kafkajsError(error);
  }
}

interface Emitter {
  on(event: string, listener: (...args: never[]) => void): unknown;
}

/**
 * platformatic logs only through the `debug` module (DEBUG=plt:kafka:*), which has no hook for a logger; what an
 * operator needs (a broker lost, a heartbeat refused, a client error) it emits as events, which go to the process
 * logger here, at warn, as `kafka.log` like kafkajs' own log lines.
 */
export function logClientEvents(client: Emitter, clientId: string, silent: boolean): void {
  const warn = (message: string, fields: Record<string, unknown> = {}): void => {
    if (!silent)
      processLogger().warn({ event: 'kafka.log', kafka: { client: 'platformatic', clientId, ...fields } }, message);
  };
  client.on('client:broker:failed', ((payload: { broker?: { host: string; port: number } }) =>
    warn('Connection to broker failed', { broker: payload?.broker })) as never);
  client.on('client:broker:disconnect', ((payload: { broker?: { host: string; port: number } }) =>
    warn('Broker disconnected', { broker: payload?.broker })) as never);
  client.on('consumer:heartbeat:error', ((payload: { error?: Error; groupId?: string }) =>
    warn(`Heartbeat failed: ${payload?.error?.message ?? 'unknown error'}`, { groupId: payload?.groupId })) as never);
  // Always listened to: an 'error' event nobody listens to would throw out of the emitter and end the process.
  client.on('error', ((error: Error) => warn(error.message)) as never);
}
