/** The port (./port.ts) implemented on @platformatic/kafka. */
import type { ConnectionOptions } from 'node:tls';
import type { SASLOptions } from 'kafkajs';
import type { Config } from '../config/index.ts';
import type { KafkaClientOptions } from './client.ts';
import type { KafkaPort } from './port.ts';

export interface ClientSecurity {
  sasl: SASLOptions | undefined;
  tls: ConnectionOptions | undefined;
}

export function platformaticClient(
  _config: Config,
  _clientId: string,
  _options: KafkaClientOptions,
  _security: ClientSecurity,
): KafkaPort {
  throw new Error('AS_KAFKA_CLIENT=platformatic: not implemented yet');
}
