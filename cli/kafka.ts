/**
 * Kafka clients for the CLI's one-shot commands (tail, produce, lag, dead-letters): kafkajs' own log is off and its
 * retries are short, so that a broker that is not there becomes one line (cli/failure.ts) within seconds instead of a
 * minute of JSON log lines. Long-running members keep the runtime's outage tolerance.
 */
import { logLevel } from 'kafkajs';
import type { KafkaPort } from '../runtime/kafka/port.ts';
import type { Config } from '../runtime/config/index.ts';
import { kafkaClient } from '../runtime/kafka/client.ts';

export const shortKafkaRetry = {
  connectionTimeout: 3000,
  retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 1000 },
} as const;

export function cliKafka(config: Config, clientId: string): KafkaPort {
  return kafkaClient(config, clientId, { ...shortKafkaRetry, logLevel: logLevel.NOTHING });
}
