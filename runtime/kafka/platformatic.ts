/** The port (./port.ts) implemented on @platformatic/kafka; the pieces are in ./platformatic/. */
import type { Config } from '../config/index.ts';
import type { KafkaClientOptions } from './client.ts';
import type { KafkaPort } from './port.ts';
import { platformaticAdmin } from './platformatic/admin.ts';
import type { ClientSecurity } from './platformatic/common.ts';
import { platformaticConsumer } from './platformatic/consumer.ts';
import { platformaticProducer } from './platformatic/producer.ts';

export type { ClientSecurity } from './platformatic/common.ts';

export function platformaticClient(
  config: Config,
  clientId: string,
  options: KafkaClientOptions,
  security: ClientSecurity,
): KafkaPort {
  const context = { config, clientId, options, security };
  return {
    client: 'platformatic',
    producer: (producerConfig) => platformaticProducer(context, producerConfig),
    consumer: (consumerConfig) => platformaticConsumer(context, consumerConfig),
    admin: () => platformaticAdmin(context),
  };
}
