/** The port (./port.ts) implemented on @confluentinc/kafka-javascript (librdkafka, KafkaJS-compatible API). */
import type { Config } from '../config/index.ts';
import type { KafkaClientOptions } from './client.ts';
import type { KafkaPort } from './port.ts';
import type { ClientSecurity } from './platformatic.ts';

export function confluentClient(
  _config: Config,
  _clientId: string,
  _options: KafkaClientOptions,
  _security: ClientSecurity,
): KafkaPort {
  throw new Error('AS_KAFKA_CLIENT=confluent: not implemented yet');
}
