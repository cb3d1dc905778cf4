/** What integration tests share: the configuration, unique names per run, and Kafka helpers. */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { kafkaClient as configuredKafkaClient } from '../../runtime/kafka/client.ts';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../../runtime/config/index.ts';
import { fleetRedisRules } from '../../infra/local/services/redis.ts';

export const config: Config = loadConfig();

/** The local Redis as its administrator (`default`), for what the fleet's ACL user may not do (FLUSHALL, CONFIG). */
export function adminRedisUrl(): string {
  return `redis://default:${encodeURIComponent(config.stack.redisAdminPassword)}@127.0.0.1:${config.stack.redisPort}`;
}

/** Creates (or resets) a Redis ACL user with the fleet user's rules and this password; returns its URL. */
export async function redisUserUrl(name: string, password: string): Promise<string> {
  const admin = new Redis(adminRedisUrl());
  try {
    await admin.call('ACL', 'SETUSER', name, 'on', 'resetpass', `>${password}`, ...fleetRedisRules);
  } finally {
    admin.disconnect();
  }
  return `redis://${encodeURIComponent(name)}:${encodeURIComponent(password)}@127.0.0.1:${config.stack.redisPort}`;
}

/** A name no earlier run used: the stack keeps its data between runs. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
}

export function kafkaClient(): KafkaPort {
  return configuredKafkaClient(config, 'test', { logLevel: logLevel.NOTHING });
}

/**
 * A kafkajs admin on plaintext brokers, for what a test checks beyond the runtime's Kafka port (topic configurations,
 * setting a group's offsets), whichever client AS_KAFKA_CLIENT selects for the code under test.
 */
export function kafkajsAdmin(brokers: string[] = config.kafka.brokers): Admin {
  return new Kafka({ clientId: 'agent-streams-test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
}

/** `work` with a connected `kafkajsAdmin`, disconnected after. */
export async function withKafkajsAdmin<T>(brokers: string[], work: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafkajsAdmin(brokers);
  await admin.connect();
  try {
    return await work(admin);
  } finally {
    await admin.disconnect();
  }
}
