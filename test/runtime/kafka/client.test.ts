/**
 * The one Kafka client constructor applies the TLS and SASL settings (they used to be parsed and then dropped at
 * every call site). The local broker speaks plaintext without SASL: a client told to use TLS, or SASL, must fail
 * to talk to it, and the plain one must succeed — which shows the settings reach the connection.
 */
import { describe, expect, it } from 'vitest';
import { kafkaClient } from '../../../runtime/kafka/client.ts';
import { config } from '../../support/stack.ts';

const connectOnce = async (overrides: Partial<typeof config.kafka>): Promise<string> => {
  const admin = kafkaClient({ ...config, kafka: { ...config.kafka, ...overrides } }, 'client-test', {
    retry: { retries: 0 },
    connectionTimeout: 2_000,
    requestTimeout: 3_000,
  }).admin();
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
    expect(
      await connectOnce({ saslMechanism: 'scram-sha-256', saslUsername: 'fleet', saslPassword: 'secret' }),
    ).toMatch(/^failed/);
  }, 30_000);

  // Over a real SASL_SSL listener: test/fleet/secure.test.ts.
  it('refuses TLS and SASL settings that cannot work, at construction, naming the setting', () => {
    const build = (overrides: Partial<typeof config.kafka>): string => {
      try {
        kafkaClient({ ...config, kafka: { ...config.kafka, ...overrides } }, 'client-test');
        return 'built';
      } catch (error) {
        return (error as Error).message;
      }
    };
    expect(build({ sslCaFile: '/etc/hostname' })).toBe(
      'AS_KAFKA_SSL_CA_FILE only apply with TLS: set AS_KAFKA_SSL=true.',
    );
    expect(build({ ssl: true, sslCertFile: '/etc/hostname' })).toMatch(
      /AS_KAFKA_SSL_CERT_FILE and AS_KAFKA_SSL_KEY_FILE go together/,
    );
    expect(build({ ssl: true, sslCaFile: '/nonexistent/ca.pem' })).toBe(
      'AS_KAFKA_SSL_CA_FILE=/nonexistent/ca.pem: cannot read the CA certificate (ENOENT).',
    );
    expect(build({ ssl: true, sslCertFile: '/etc/hostname', sslKeyFile: '/nonexistent/key.pem' })).toMatch(
      /^AS_KAFKA_SSL_KEY_FILE=\/nonexistent\/key\.pem: cannot read/,
    );
    expect(build({ saslMechanism: 'plain', saslUsername: 'fleet' })).toMatch(
      /needs AS_KAFKA_SASL_USERNAME and AS_KAFKA_SASL_PASSWORD \(the password is empty\)/,
    );
    expect(build({ ssl: true, sslCaFile: '/etc/hostname' })).toBe('built');
  });
});
