/** What integration tests share: the configuration, unique names per run, and Kafka helpers. */
import { randomBytes } from 'node:crypto';
import { logLevel, type Kafka } from 'kafkajs';
import { kafkaClient as configuredKafkaClient } from '../../runtime/kafka/client.ts';
import { loadConfig, type Config } from '../../runtime/config/index.ts';

export const config: Config = loadConfig();

/** A name no earlier run used: the stack keeps its data between runs. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export function kafkaClient(): Kafka {
  return configuredKafkaClient(config, 'test', { logLevel: logLevel.NOTHING });
}
