/**
 * The one Kafka client constructor applies the TLS and SASL settings (they used to be parsed and then dropped at
 * every call site). The local broker speaks plaintext without SASL: a client told to use TLS, or SASL, must fail
 * to talk to it, and the plain one must succeed — which shows the settings reach the connection.
 */
import { describe, expect, it } from 'vitest';
import { kafkaClient } from '../../../runtime/kafka/client.ts';
import { config } from '../../support/stack.ts';

const connectOnce = async (overrides: Partial<typeof config.kafka>): Promise<string> => {
  const admin = kafkaClient({ ...config, kafka: { ...config.kafka, ...overrides } }, 'client-test', { retry: { retries: 0 }, connectionTimeout: 2_000, requestTimeout: 3_000 }).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    return 'connected';
  } catch (error) {
    return `failed: ${(error as Error).message}`;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
};

describe('kafkaClient', () => {
  it('connects with the plain settings of the local stack', async () => {
    expect(await connectOnce({})).toBe('connected');
  });

  it('applies AS_KAFKA_SSL: a TLS client cannot talk to the plaintext listener', async () => {
    expect(await connectOnce({ ssl: true })).toMatch(/^failed/);
  }, 30_000);

  it('applies AS_KAFKA_SASL_*: a SASL client cannot authenticate against a listener without SASL', async () => {
    expect(await connectOnce({ saslMechanism: 'scram-sha-256', saslUsername: 'fleet', saslPassword: 'secret' })).toMatch(/^failed/);
  }, 30_000);
});
