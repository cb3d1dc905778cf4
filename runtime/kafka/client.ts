/**
 * The one constructor of Kafka clients. Every process (members, sink, connectors, CLI) builds its client here, so
 * a setting such as TLS or SASL applies everywhere at once instead of being parsed and then dropped at one of many
 * call sites.
 */
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Kafka, logLevel, type KafkaConfig, type SASLOptions } from 'kafkajs';
import type { Config } from '../config/index.ts';
import { kafkaLogCreator } from '../observability/log.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { KafkaPort } from './port.ts';
import { platformaticClient } from './platformatic.ts';
import { confluentClient } from './confluent.ts';

/** `logLevel`: probes that expect refusals (the stack's readiness check) turn the client's log off. */
export type KafkaClientOptions = Pick<KafkaConfig, 'retry' | 'connectionTimeout' | 'requestTimeout' | 'logLevel'>;

function sasl(config: Config): SASLOptions | undefined {
  const { saslMechanism: mechanism, saslUsername: username, saslPassword: password } = config.kafka;
  if (mechanism === 'none') return undefined;
  if (username === '' || password === '') {
    throw new AgentStreamsError(
      ErrorCode.CONFIG_INVALID,
      `AS_KAFKA_SASL_MECHANISM=${mechanism} needs AS_KAFKA_SASL_USERNAME and AS_KAFKA_SASL_PASSWORD (${username === '' ? 'the user name' : 'the password'} is empty).`,
    );
  }
  return { mechanism, username, password } as SASLOptions;
}

function readPem(file: string, env: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.CONFIG_INVALID,
      `${env}=${file}: cannot read the ${what} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`,
      {
        cause: error,
      },
    );
  }
}

/** The TLS options, with the CA and client certificate read once, at start: a missing file fails here, naming its setting. */
function tls(config: Config): ConnectionOptions | undefined {
  const { ssl, sslCaFile, sslCertFile, sslKeyFile } = config.kafka;
  const files = {
    AS_KAFKA_SSL_CA_FILE: sslCaFile,
    AS_KAFKA_SSL_CERT_FILE: sslCertFile,
    AS_KAFKA_SSL_KEY_FILE: sslKeyFile,
  };
  if (!ssl) {
    const set = Object.entries(files).filter(([, file]) => file !== '');
    if (set.length > 0)
      throw new AgentStreamsError(
        ErrorCode.CONFIG_INVALID,
        `${set.map(([env]) => env).join(' and ')} only apply with TLS: set AS_KAFKA_SSL=true.`,
      );
    return undefined;
  }
  if ((sslCertFile === '') !== (sslKeyFile === '')) {
    throw new AgentStreamsError(
      ErrorCode.CONFIG_INVALID,
      'AS_KAFKA_SSL_CERT_FILE and AS_KAFKA_SSL_KEY_FILE go together: set both for mutual TLS, or neither.',
    );
  }
  return {
    ...(sslCaFile ? { ca: readPem(sslCaFile, 'AS_KAFKA_SSL_CA_FILE', 'CA certificate') } : {}),
    ...(sslCertFile
      ? {
          cert: readPem(sslCertFile, 'AS_KAFKA_SSL_CERT_FILE', 'client certificate'),
          key: readPem(sslKeyFile, 'AS_KAFKA_SSL_KEY_FILE', 'client key'),
        }
      : {}),
  };
}

const tlsVerifyCodes = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Turns a TLS or SASL failure into a one-line error naming the setting to fix; anything else is not ours to explain. */
export function explainKafkaSecurityError(config: Config, error: unknown): AgentStreamsError | undefined {
  for (
    let e: unknown = error, depth = 0;
    e instanceof Error && depth < 8;
    e = (e as { cause?: unknown; originalError?: unknown }).cause ?? (e as { originalError?: unknown }).originalError,
      depth++
  ) {
    const code = (e as NodeJS.ErrnoException).code;
    // OpenSSL's messages end in a newline and a source location: one line, without the location.
    const message = e.message
      .replace(/:\.\.\/deps\/openssl\S*/g, '')
      .replace(/\s+/g, ' ')
      .trim();
    if (e.name === 'KafkaJSSASLAuthenticationError') {
      return new AgentStreamsError(
        ErrorCode.KAFKA_AUTH_FAILED,
        `Kafka rejected SASL ${config.kafka.saslMechanism} user "${config.kafka.saslUsername}" (${message}): check AS_KAFKA_SASL_USERNAME and AS_KAFKA_SASL_PASSWORD.`,
        { cause: error },
      );
    }
    if (
      (code !== undefined && tlsVerifyCodes.has(code)) ||
      /self[- ]signed certificate|unable to verify|unable to get (local )?issuer/i.test(e.message)
    ) {
      return new AgentStreamsError(
        ErrorCode.KAFKA_TLS_FAILED,
        `The broker's TLS certificate was not accepted (${message}): AS_KAFKA_SSL_CA_FILE must name the CA that signed it${config.kafka.sslCaFile ? ` (now ${config.kafka.sslCaFile})` : ' (unset: only the system CAs are trusted)'}.`,
        { cause: error },
      );
    }
    if (/alert (certificate required|handshake failure|bad certificate|unknown ca)/i.test(e.message)) {
      return new AgentStreamsError(
        ErrorCode.KAFKA_TLS_FAILED,
        `The broker refused this client's TLS certificate (${message}): set AS_KAFKA_SSL_CERT_FILE and AS_KAFKA_SSL_KEY_FILE to a certificate its truststore accepts.`,
        { cause: error },
      );
    }
  }
  return undefined;
}

/**
 * One TLS handshake and Kafka ApiVersions round trip with the client's own TLS options. kafkajs retries a failed
 * handshake like any connection error (for a minute with our outage tolerance); a certificate that will never be
 * accepted should fail in one round trip instead. Unreachable brokers are left to kafkajs' retries.
 */
async function tlsPreflight(config: Config, options: ConnectionOptions): Promise<void> {
  const [host, port] = splitHostPort(config.kafka.brokers[0]!);
  const clientId = Buffer.from('agent-streams-preflight');
  const request = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length);
  request.writeInt32BE(request.length - 4, 0);
  request.writeInt16BE(18, 4); // ApiVersions, v0: every listener answers it before authentication
  request.writeInt16BE(0, 6);
  request.writeInt32BE(1, 8);
  request.writeInt16BE(clientId.length, 12);
  clientId.copy(request, 14);
  await new Promise<void>((done, fail) => {
    const socket = tlsConnect({
      host,
      port,
      servername: /^[\d.]+$|:/.test(host) ? undefined : host,
      ...options,
      timeout: 10_000,
    } as ConnectionOptions);
    const finish = (error?: Error): void => {
      socket.destroy();
      if (error && explainKafkaSecurityError(config, error)) fail(explainKafkaSecurityError(config, error));
      else done();
    };
    socket.once('secureConnect', () => socket.write(request));
    socket.once('data', () => finish());
    socket.once('error', (error) => finish(error));
    socket.once('timeout', () => finish());
    socket.once('close', () => finish());
  });
}

function splitHostPort(broker: string): [string, number] {
  const at = broker.lastIndexOf(':');
  return [broker.slice(0, at).replace(/^\[|\]$/g, ''), Number(broker.slice(at + 1))];
}

/** Wraps `connect` of a producer, consumer or admin: TLS checked first, security failures explained. */
function explainingConnect<T extends { connect(): Promise<void> }>(
  config: Config,
  client: T,
  preflight: () => Promise<void>,
): T {
  const connect = client.connect.bind(client);
  client.connect = async () => {
    await preflight();
    try {
      await connect();
    } catch (error) {
      throw explainKafkaSecurityError(config, error) ?? error;
    }
  };
  return client;
}

/**
 * A Kafka client for `clientId` (suffixed to the configured client-id prefix), with the configured brokers, TLS and
 * SASL, implemented by the library `AS_KAFKA_CLIENT` names (kafkajs by default; see ./port.ts).
 */
export function kafkaClient(config: Config, clientId: string, options: KafkaClientOptions = {}): KafkaPort {
  if (config.kafka.client === 'confluent')
    return confluentClient(config, clientId, options, { sasl: sasl(config), tls: tls(config) });
  if (config.kafka.client === 'platformatic')
    return platformaticClient(config, clientId, options, { sasl: sasl(config), tls: tls(config) });
  return kafkajsClient(config, clientId, options);
}

function kafkajsClient(config: Config, clientId: string, options: KafkaClientOptions): KafkaPort {
  const auth = sasl(config);
  const ssl = tls(config);
  const kafka = new Kafka({
    clientId: `${config.kafka.clientId}-${clientId}`,
    brokers: config.kafka.brokers,
    // Warnings and errors only (connection losses, rebalances, request timeouts), through the process's logger.
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(),
    ...(ssl ? { ssl: Object.keys(ssl).length > 0 ? ssl : true } : {}),
    ...(auth ? { sasl: auth } : {}),
    ...options,
  });
  // One TLS check per client, shared by its producers, consumers and admins; a failed one is tried again next time.
  let checked: Promise<void> | undefined;
  const preflight = async (): Promise<void> => {
    if (!ssl) return;
    checked ??= tlsPreflight(config, ssl);
    try {
      await checked;
    } catch (error) {
      checked = undefined;
      throw error;
    }
  };
  const producer = kafka.producer.bind(kafka);
  const consumer = kafka.consumer.bind(kafka);
  const admin = kafka.admin.bind(kafka);
  return {
    client: 'kafkajs',
    producer: (...args) => explainingConnect(config, producer(...args), preflight),
    consumer: (...args) => explainingConnect(config, consumer(...args), preflight),
    admin: () => explainingConnect(config, admin(), preflight),
  };
}
