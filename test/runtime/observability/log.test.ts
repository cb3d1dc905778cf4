/**
 * The logger's contract: every line is JSON with level, time, application, processor and instance; the active
 * span's ids; secrets never written, however they arrive; kafkajs' warnings and errors (and nothing quieter)
 * arrive through it.
 */
import { Writable } from 'node:stream';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { context, trace, TraceFlags } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../runtime/config/index.ts';
import { kafkaClient } from '../../../runtime/kafka/client.ts';
import {
  createLogger,
  eventLog,
  installProcessLogger,
  levelOfEvent,
  lineLog,
  processLogger,
} from '../../../runtime/observability/log.ts';
import { freePort } from '../../support/private-broker.ts';

function collector(): { lines: Array<Record<string, unknown>>; raw: string[]; stream: Writable } {
  const raw: string[] = [];
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { lines, raw, stream };
}

const secrets = {
  AS_KAFKA_SASL_PASSWORD: 'kafka-Pw-7Hq2xLz9',
  AS_REGISTRY_PASSWORD: 'registry-Pw-M4vK8sT1',
  AS_CLICKHOUSE_PASSWORD: 'click"house\\Pw-Q9wE3',
  ANTHROPIC_API_KEY: 'sk-ant-test-Zr5Yb2Nc8Vd1',
  AS_REDIS_URL: 'redis://fleet:redis-Pw%2FU6jH4@127.0.0.1:16379',
};

afterEach(() => {
  installProcessLogger(undefined as never);
});

describe('the logger', () => {
  it('writes level, time, application, processor, instance and the event on every line', () => {
    const out = collector();
    const logger = createLogger({
      application: 'fleet-a',
      processor: 'router',
      instance: 'r1',
      destination: out.stream,
    });
    const log = eventLog(logger);
    log('group.join', { partitions: [0, 1] });
    log('batch.error', { topic: 't', partition: 3, offset: '41', message: 'boom' });
    log('state.retry', { partition: 3 });
    lineLog(logger, 'llm')('llm: budget store Redis 127.0.0.1:16379 unreachable (ECONNREFUSED)');
    expect(out.lines).toHaveLength(4);
    for (const line of out.lines) {
      expect(line).toMatchObject({ application: 'fleet-a', processor: 'router', instance: 'r1' });
      expect(typeof line.time).toBe('string');
      expect(Number.isNaN(Date.parse(line.time as string))).toBe(false);
    }
    expect(out.lines.map((l) => [l.level, l.event])).toEqual([
      ['info', 'group.join'],
      ['error', 'batch.error'],
      ['warn', 'state.retry'],
      ['warn', 'llm'],
    ]);
    expect(out.lines[1]).toMatchObject({ topic: 't', partition: 3, offset: '41' });
    expect(out.lines[3]!.msg).toMatch(/unreachable/);
    expect(levelOfEvent('consumer.crash')).toBe('error');
  });

  it('carries the active span’s trace and span ids, and none outside a span', () => {
    const manager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(manager);
    try {
      const out = collector();
      const log = eventLog(createLogger({ application: 'a', processor: 'p', destination: out.stream }));
      const span = trace.wrapSpanContext({
        traceId: '0af7651916cd43dd8448eb211c80319c',
        spanId: 'b7ad6b7169203331',
        traceFlags: TraceFlags.SAMPLED,
      });
      context.with(trace.setSpan(context.active(), span), () =>
        log('alert.write', { alertId: 'al-1', findingId: 'f-1' }),
      );
      log('outside');
      expect(out.lines[0]).toMatchObject({
        trace_id: '0af7651916cd43dd8448eb211c80319c',
        span_id: 'b7ad6b7169203331',
        alertId: 'al-1',
        findingId: 'f-1',
      });
      expect(out.lines[1]).not.toHaveProperty('trace_id');
    } finally {
      context.disable();
    }
  });

  it('never writes a configured secret, a secret field or a password inside a URL', () => {
    const config = loadConfig({ env: secrets });
    const out = collector();
    const logger = createLogger({
      application: 'a',
      processor: 'p',
      config,
      secrets: ['ingest-key-Lp0Rt6Wq3Xs'],
      destination: out.stream,
    });
    const log = eventLog(logger);
    log('started', { config });
    log('redis.error', { message: `connect to ${config.redis.url} failed` });
    log('request.error', {
      error: `bad key ingest-key-Lp0Rt6Wq3Xs from client`,
      headers: { authorization: 'Bearer abc123456', 'x-api-key': 'whatever-key-1' },
    });
    log('clickhouse.error', {
      message: `auth failed for http://default:${secrets.AS_CLICKHOUSE_PASSWORD}@127.0.0.1:18123/`,
    });
    log('kafka.error', {
      sasl: { mechanism: 'plain', username: 'u', password: 'not-in-config-Yy7' },
      note: `password ${secrets.AS_KAFKA_SASL_PASSWORD} rejected`,
    });
    logger.error(
      new Error(
        `key ${secrets.ANTHROPIC_API_KEY} refused by https://user:${secrets.AS_REGISTRY_PASSWORD}@registry.example/`,
      ),
    );
    lineLog(logger, 'llm')(`llm: key ${secrets.ANTHROPIC_API_KEY} failed`);
    const text = out.raw.join('\n');
    const forbidden = [
      ...Object.values(secrets).filter((s) => !s.startsWith('redis://')),
      'redis-Pw%2FU6jH4',
      'redis-Pw/U6jH4',
      'ingest-key-Lp0Rt6Wq3Xs',
      'abc123456',
      'whatever-key-1',
      'not-in-config-Yy7',
      JSON.stringify(secrets.AS_CLICKHOUSE_PASSWORD).slice(1, -1),
    ];
    for (const secret of forbidden) expect(text, secret).not.toContain(secret);
    expect(out.lines).toHaveLength(7);
    // What is not secret stays readable.
    expect(text).toContain('redis://fleet:***@127.0.0.1:16379');
    expect(text).toContain('127.0.0.1:18123');
  });

  it('receives kafkajs errors and warnings, and nothing quieter, through the process logger', async () => {
    const out = collector();
    installProcessLogger(
      createLogger({ application: 'fleet-k', processor: 'feed', instance: 'k1', destination: out.stream }),
    );
    expect(processLogger().bindings()).toMatchObject({ application: 'fleet-k' });
    // Nothing listens on this port: kafkajs logs its connection errors.
    const config = loadConfig({ env: { AS_KAFKA_BROKERS: `127.0.0.1:${await freePort()}` } });
    const admin = kafkaClient(config, 'log-test', {
      retry: { retries: 1, initialRetryTime: 50 },
      connectionTimeout: 500,
    }).admin();
    await expect(admin.connect()).rejects.toThrow();
    await admin.disconnect();
    // A working client against the stack: its consumer logs INFO lines (joins, starts) that must not arrive.
    const shared = loadConfig();
    const consumer = kafkaClient(shared, 'log-test').consumer({ groupId: `log-test-${Date.now()}` });
    await consumer.connect();
    await consumer.disconnect();
    // A broker's error answer that kafkajs handles (metadata of a topic that does not exist) is a warning, not an error.
    const asker = kafkaClient(shared, 'log-test', { retry: { retries: 0 } }).admin();
    await asker.connect();
    await expect(asker.fetchTopicMetadata({ topics: [`log-test-missing-${Date.now()}`] })).rejects.toThrow();
    await asker.disconnect();
    const answered = out.lines.filter((l) => l.event === 'kafka.log' && String(l.msg).startsWith('Response Metadata'));
    expect(answered.length).toBeGreaterThan(0);
    expect(answered.every((l) => l.level === 'warn')).toBe(true);
    // kafkajs' once-per-process partitioner notice (a WARN) is dropped: nothing to act on.
    kafkaClient(shared, 'log-test').producer();
    expect(out.lines.some((l) => /partitioner/.test(String(l.msg)))).toBe(false);
    const kafka = out.lines.filter((l) => l.event === 'kafka.log');
    expect(kafka.length).toBeGreaterThan(0);
    expect(kafka.some((l) => l.level === 'error' && /connect/i.test(String(l.msg)))).toBe(true);
    for (const line of kafka) {
      expect(['warn', 'error']).toContain(line.level);
      expect(line).toMatchObject({ application: 'fleet-k', processor: 'feed', instance: 'k1' });
      expect(line.kafka).toHaveProperty('namespace');
    }
  });
});
