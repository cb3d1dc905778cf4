/**
 * The one constructor of Kafka clients. Every process (members, sink, connectors, CLI) builds its client here, so
 * a setting such as TLS or SASL applies everywhere at once instead of being parsed and then dropped at one of many
 * call sites.
 */
import { Kafka, logLevel, type KafkaConfig, type SASLOptions } from 'kafkajs';
import type { Config } from '../config/index.ts';
import { kafkaLogCreator } from '../observability/log.ts';

export type KafkaClientOptions = Pick<KafkaConfig, 'retry' | 'connectionTimeout' | 'requestTimeout'>;

function sasl(config: Config): SASLOptions | undefined {
  const { saslMechanism: mechanism, saslUsername: username, saslPassword: password } = config.kafka;
  if (mechanism === 'none') return undefined;
  return { mechanism, username, password } as SASLOptions;
}

/** A kafkajs client for `clientId` (suffixed to the configured client-id prefix), with the configured brokers, TLS and SASL. */
export function kafkaClient(config: Config, clientId: string, options: KafkaClientOptions = {}): Kafka {
  const auth = sasl(config);
  return new Kafka({
    clientId: `${config.kafka.clientId}-${clientId}`,
    brokers: config.kafka.brokers,
    // Warnings and errors only (connection losses, rebalances, request timeouts), through the process's logger.
    logLevel: logLevel.WARN,
    logCreator: kafkaLogCreator(),
    ...(config.kafka.ssl ? { ssl: true } : {}),
    ...(auth ? { sasl: auth } : {}),
    ...options,
  });
}
