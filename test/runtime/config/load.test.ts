import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, redactConfig } from '../../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';

function configError(env: Record<string, string>, file?: string): AgentStreamsError {
  try {
    loadConfig({ env, file });
  } catch (error) {
    if (error instanceof AgentStreamsError) return error;
    throw error;
  }
  throw new Error('expected loadConfig to fail');
}

describe('loadConfig', () => {
  it('gives the local stack defaults when nothing is set', () => {
    const config = loadConfig({ env: {} });
    expect(config.kafka.brokers).toEqual(['127.0.0.1:19092']);
    expect(config.registry.url).toBe('http://127.0.0.1:18081/apis/ccompat/v7');
    expect(config.redis.url).toBe('redis://agent-streams:agent-streams-local@127.0.0.1:16379');
    expect(config.clickhouse.url).toBe('http://127.0.0.1:18123');
    expect(config.anthropic.apiKey).toBe('');
  });

  it('derives connection URLs from moved stack ports unless they are set explicitly', () => {
    const config = loadConfig({
      env: { AS_STACK_KAFKA_PORT: '29092', AS_STACK_REDIS_PORT: '26379', AS_REDIS_URL: 'redis://10.0.0.5:6379' },
    });
    expect(config.kafka.brokers).toEqual(['127.0.0.1:29092']);
    expect(config.redis.url).toBe('redis://10.0.0.5:6379');
  });

  it('parses lists, booleans and enums from the environment', () => {
    const config = loadConfig({
      env: { AS_KAFKA_BROKERS: 'a:9092, b:9093', AS_KAFKA_SSL: 'yes', AS_KAFKA_SASL_MECHANISM: 'scram-sha-512' },
    });
    expect(config.kafka.brokers).toEqual(['a:9092', 'b:9093']);
    expect(config.kafka.ssl).toBe(true);
    expect(config.kafka.saslMechanism).toBe('scram-sha-512');
  });

  it('names every invalid setting, where it came from and what was expected', () => {
    const error = configError({
      AS_KAFKA_BROKERS: 'localhost',
      AS_STACK_REDIS_PORT: '70000',
      AS_CLICKHOUSE_URL: 'ftp://x',
      AS_KAFKA_SSL: 'maybe',
    });
    expect(error.code).toBe(ErrorCode.CONFIG_INVALID);
    expect(error.message).toContain(
      'kafka.brokers (environment variable AS_KAFKA_BROKERS) is invalid: expected host:port, got "localhost"',
    );
    expect(error.message).toContain(
      'stack.redisPort (environment variable AS_STACK_REDIS_PORT) is invalid: expected a whole number from 1 to 65535',
    );
    expect(error.message).toContain('clickhouse.url');
    expect(error.message).toContain('kafka.ssl');
    expect(error.details.problems).toHaveLength(4);
  });

  it('reads a JSON file, lets the environment win, and refuses unknown keys', () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-config-'));
    const good = join(dir, 'good.json');
    writeFileSync(
      good,
      JSON.stringify({
        kafka: { brokers: ['k1:9092', 'k2:9092'], clientId: 'from-file' },
        clickhouse: { database: 'x' },
      }),
    );
    const config = loadConfig({ env: { AS_KAFKA_CLIENT_ID: 'from-env' }, file: good });
    expect(config.kafka.brokers).toEqual(['k1:9092', 'k2:9092']);
    expect(config.kafka.clientId).toBe('from-env');
    expect(config.clickhouse.database).toBe('x');

    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ kafka: { brokerz: 'k1:9092' }, clickhouse: { database: 'no-dashes' } }));
    const error = configError({}, bad);
    expect(error.message).toContain('unknown setting "kafka.brokerz"');
    expect(error.message).toContain('clickhouse.database');

    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ not json');
    expect(configError({}, broken).message).toContain(`config file ${broken}`);
  });

  it('redacts secrets, including passwords inside URLs', () => {
    const config = loadConfig({
      env: {
        ANTHROPIC_API_KEY: 'sk-ant-secret',
        AS_REDIS_URL: 'redis://user:pw@127.0.0.1:6379',
        AS_CLICKHOUSE_PASSWORD: 'p',
      },
    });
    const shown = JSON.stringify(redactConfig(config));
    expect(shown).not.toContain('sk-ant-secret');
    expect(shown).not.toContain(':pw@');
    expect(shown).toContain('redis://***@127.0.0.1:6379');
    expect(shown).not.toContain('"password":"p"');
  });
});
