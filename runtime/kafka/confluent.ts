/**
 * The port (./port.ts) implemented on @confluentinc/kafka-javascript (librdkafka behind a KafkaJS-compatible API);
 * the pieces are in ./confluent/. The library is an optional dependency, loaded at the first client made.
 */
import type { Config } from '../config/index.ts';
import type { KafkaClientOptions } from './client.ts';
import type { KafkaPort } from './port.ts';
import type { ClientSecurity } from './platformatic.ts';
import { confluentAdmin } from './confluent/admin.ts';
import { confluentLibrary } from './confluent/common.ts';
import { confluentConsumer } from './confluent/consumer.ts';
import { confluentProducer, GroupHandles } from './confluent/producer.ts';

export function confluentClient(
  config: Config,
  clientId: string,
  options: KafkaClientOptions,
  security: ClientSecurity,
): KafkaPort {
  confluentLibrary(); // absent: fails here, saying how to install it
  const context = { config, clientId, options, security };
  const groups = new GroupHandles(context);
  return {
    client: 'confluent',
    producer: (producerConfig) => confluentProducer(context, groups, producerConfig),
    consumer: (consumerConfig) => confluentConsumer(context, consumerConfig),
    admin: () => confluentAdmin(context),
  };
}
