import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { readTables, writeTable } from '../../../runtime/state/tables.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { marketSignals } from '../../../topologies/market-signals.ts';
import { finding, type Finding } from '../../../processors/finding.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const schemas = loadSchemas(join(root, 'schemas'));
/** Findings carry event times within their schema's range (2000–2100). */
const T0 = Date.UTC(2026, 0, 5, 14, 0);
const portfolio = (id: string, symbol: string) => ({ portfolioId: id, name: id, holdings: [{ symbol, weight: 0.5 }] });

describe('shared tables', () => {
  const redis = new Redis(config.redis.url);
  afterAll(() => redis.disconnect());

  it('validates every row before replacing a table, filling schema defaults', async () => {
    const topology = marketSignals({ application: uniqueName('tables').replaceAll('_', '-') });
    expect(
      await writeTable(
        redis,
        kafkaClient(),
        topology,
        'portfolios',
        [portfolio('a', 'ACME'), portfolio('b', 'BOLT')],
        schemas,
      ),
    ).toBe(2);
    const rows = (await readTables(redis, topology, ['portfolios'])).get('portfolios')!;
    expect(rows.get('a')).toEqual({
      ...portfolio('a', 'ACME'),
      raiseAtWeight: 0.1,
      moveThresholdScale: 1,
      alertAt: 'high',
    });
    const error = await writeTable(
      redis,
      kafkaClient(),
      topology,
      'portfolios',
      [portfolio('c', 'CRUX'), { portfolioId: 'd' }],
      schemas,
    ).catch((e: unknown) => e as Error);
    expect((error as Error).message).toContain('row 2: does not match agentstreams.fleet.Portfolio');
    // A row the schema accepts can still break the table's own rules (TableSpec.validate).
    const badScale = await writeTable(
      redis,
      kafkaClient(),
      topology,
      'portfolios',
      [portfolio('c', 'CRUX'), { ...portfolio('d', 'DYNA'), moveThresholdScale: 0 }],
      schemas,
    ).catch((e: unknown) => e as Error);
    expect((badScale as Error).message).toContain('row 2 (d): moveThresholdScale must be a finite number > 0');
    expect([...(await readTables(redis, topology, ['portfolios'])).get('portfolios')!.keys()].sort()).toEqual([
      'a',
      'b',
    ]);
    await expect(writeTable(redis, kafkaClient(), topology, 'nope', [], schemas)).rejects.toThrow(
      /has no table "nope"; it has portfolios/,
    );
  });

  it('reaches running processors, which see updates without a restart', async () => {
    const application = uniqueName('exposure').replaceAll('_', '-');
    const topology = marketSignals({ application });
    await writeTable(redis, kafkaClient(), topology, 'portfolios', [portfolio('first', 'ACME')], schemas);
    const registry = registryClient(config);
    await registerSchemas(config, registry, schemas);
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.fleet.Finding');
    const handle = await runProcessor({ config, topology, processor: 'portfolio-exposure', tableRefreshMs: 200 });
    const kafka = kafkaClient();
    const producer = kafka.producer();
    await producer.connect();
    const source = {
      topic: 't',
      partition: 0,
      offset: '1',
      key: 'ACME',
      value: null,
      recordType: '',
      timestamp: 0,
      headers: {},
    };
    const market = (windowStart: number): Finding =>
      finding(
        {
          agent: 'price-move',
          rule: 'move-2m',
          symbol: 'ACME',
          severity: 'medium',
          windowStart,
          windowEnd: windowStart + 1,
          eventTime: windowStart,
          evidence: { return: -0.04 },
          summary: 's',
        },
        source,
      );
    await producer.send({
      topic: `${application}.findings`,
      messages: [{ key: 'ACME', value: serde.encode('agentstreams.fleet.Finding', market(T0 + 1000)) }],
    });
    while (handle.stats.records < 1) await sleep(100);
    await writeTable(
      redis,
      kafkaClient(),
      topology,
      'portfolios',
      [portfolio('first', 'ACME'), portfolio('second', 'ACME')],
      schemas,
    );
    await sleep(600);
    await producer.send({
      topic: `${application}.findings`,
      messages: [{ key: 'ACME', value: serde.encode('agentstreams.fleet.Finding', market(T0 + 2000)) }],
    });
    while (handle.stats.records < 2) await sleep(100);
    await producer.disconnect();
    await handle.stop();

    const out: string[] = [];
    const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic: `${application}.portfolio-findings`, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void out.push(`${message.key}`) });
    const until = Date.now() + 15_000;
    while (out.length < 3 && Date.now() < until) await sleep(100);
    await sleep(500);
    await consumer.disconnect();
    expect(out.sort()).toEqual(['first', 'first', 'second']);
  }, 60_000);

  it('live in a compacted topic, their source of truth: a Redis copy that is lost is rebuilt from it, deleted rows stay deleted', async () => {
    const application = uniqueName('table-topic').replaceAll('_', '-');
    const topology = marketSignals({ application });
    const kafka = kafkaClient();
    await writeTable(redis, kafka, topology, 'portfolios', [portfolio('a', 'ACME'), portfolio('b', 'BOLT')], schemas);
    await writeTable(redis, kafka, topology, 'portfolios', [portfolio('b', 'BOLT'), portfolio('c', 'CRUX')], schemas); // a is tombstoned
    expect(await redis.del(topology.tableKey('portfolios'))).toBe(1); // Redis loses the table (FLUSHALL, failover)

    // Without Kafka the loss shows as an empty table; with it, the table comes back from the topic and is cached again.
    expect((await readTables(redis, topology, ['portfolios'])).get('portfolios')!.size).toBe(0);
    const restored = (await readTables(redis, topology, ['portfolios'], kafka)).get('portfolios')!;
    expect([...restored.keys()].sort()).toEqual(['b', 'c']);
    expect(restored.get('c')).toMatchObject(portfolio('c', 'CRUX'));
    expect(await redis.hlen(topology.tableKey('portfolios'))).toBe(3); // b, c and the loaded mark
    // An empty table is a table: loading none tombstones everything, and reads stay empty without going to Kafka.
    await writeTable(redis, kafka, topology, 'portfolios', [], schemas);
    await redis.del(topology.tableKey('portfolios'));
    expect((await readTables(redis, topology, ['portfolios'], kafka)).get('portfolios')!.size).toBe(0);
    // A table never loaded has no topic: empty, and nothing is created.
    expect(
      (await readTables(redis, marketSignals({ application: `${application}-none` }), ['portfolios'], kafka)).get(
        'portfolios',
      )!.size,
    ).toBe(0);
  }, 60_000);

  it('a member started after Redis lost the table still finds the portfolios (findings are not silently dropped)', async () => {
    const application = uniqueName('table-lost').replaceAll('_', '-');
    const topology = marketSignals({ application });
    const kafka = kafkaClient();
    await writeTable(redis, kafka, topology, 'portfolios', [portfolio('only', 'ACME')], schemas);
    await redis.del(topology.tableKey('portfolios'));
    const registry = registryClient(config);
    await registerSchemas(config, registry, schemas);
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.fleet.Finding');
    const handle = await runProcessor({ config, topology, processor: 'portfolio-exposure' });
    const producer = kafka.producer();
    await producer.connect();
    const source = {
      topic: 't',
      partition: 0,
      offset: '1',
      key: 'ACME',
      value: null,
      recordType: '',
      timestamp: 0,
      headers: {},
    };
    const market = finding(
      {
        agent: 'price-move',
        rule: 'move-2m',
        symbol: 'ACME',
        severity: 'medium',
        windowStart: T0,
        windowEnd: T0 + 1,
        eventTime: T0,
        evidence: { return: -0.04 },
        summary: 's',
      },
      source,
    );
    await producer.send({
      topic: `${application}.findings`,
      messages: [{ key: 'ACME', value: serde.encode('agentstreams.fleet.Finding', market) }],
    });
    await producer.disconnect();
    const until = Date.now() + 30_000;
    while (handle.stats.records < 1 && Date.now() < until) await sleep(100);
    await handle.stop();
    const out: string[] = [];
    const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic: `${application}.portfolio-findings`, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void out.push(`${message.key}`) });
    const readUntil = Date.now() + 15_000;
    while (out.length < 1 && Date.now() < readUntil) await sleep(100);
    await consumer.disconnect();
    expect(out).toEqual(['only']);
  }, 60_000);
});
