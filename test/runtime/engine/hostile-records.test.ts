/**
 * Hostile bytes on the real stack: a 12-byte NewsItem declaring 500 million symbols, a PriceTick at +Infinity, one
 * in the year 3000 and one three days ahead of the wall clock, among good records. The member stays up (the bomb
 * would otherwise exhaust its heap), each bad record is dead-lettered exactly once with its reason, and every good
 * record is processed.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { KafkaPort } from '../../../runtime/kafka/port.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { deadLetterHeader } from '../../../runtime/engine/dead-letter.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const types = ['agentstreams.market.PriceTick', 'agentstreams.market.NewsItem', 'agentstreams.market.Trade'];

async function read(
  kafka: KafkaPort,
  topic: string,
  count: number,
): Promise<Array<{ key: string; headers: Record<string, string> }>> {
  const out: Array<{ key: string; headers: Record<string, string> }> = [];
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      out.push({
        key: message.key!.toString(),
        headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
      });
    },
  });
  const until = Date.now() + 30_000;
  while (out.length < count && Date.now() < until) await sleep(100);
  await sleep(1000); // anything beyond `count` would be a duplicate: give it a moment to show up
  await consumer.disconnect();
  return out;
}

describe('hostile records on the real stack', () => {
  it('dead-letters a heap bomb, a non-finite price and far-future event times once each, and processes every good record', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('hostile').replaceAll('_', '-');
    const input = `${application}.input`;
    const seen = `${application}.seen`;
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 3 }, [seen]: { partitions: 3 } },
      processors: {
        watcher: processor({
          inputs: [input],
          outputs: { [seen]: types },
          stores: ['last'],
          process: (record, ctx) => {
            ctx.store<number>('last').set(record.timestamp);
            ctx.forward({
              topic: seen,
              key: record.key,
              value: record.value,
              recordType: record.recordType,
              headers: record.headers,
            });
          },
        }),
      },
    });
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'schemas')));
    const serde = new AvroSerde(registry);
    for (const t of types) await serde.writerFor(t);
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: input, numPartitions: 3 }], waitForLeaders: true });
    await admin.disconnect();

    const now = Date.now();
    const good = (i: number) => {
      const symbol = ['ACME', 'BOLT', 'CRUX'][i % 3]!;
      const eventTime = now - 60_000 + i;
      const kind = i % 3;
      const value =
        kind === 0
          ? serde.encode(types[0]!, {
              symbol,
              eventTime,
              price: 100 + i,
              bid: null,
              ask: null,
              currency: 'USD',
              venue: '',
            })
          : kind === 1
            ? serde.encode(types[1]!, {
                id: `n${i}`,
                symbols: [symbol],
                headline: 'h',
                body: '',
                source: 's',
                eventTime,
                url: null,
              })
            : serde.encode(types[2]!, { symbol, eventTime, price: 50, quantity: 10, side: 'BUY', tradeId: `t${i}` });
      return { key: symbol, value, headers: { marker: `good-${i}` } };
    };
    // The NewsItem bomb: wire header, id "a", then an array block count of 500,000,000 and nothing else.
    const newsId = (await serde.writerFor(types[1]!)).id;
    const bomb = Buffer.from([0, 0, 0, 0, 0, 0x02, 0x61, 0x80, 0x94, 0xeb, 0xdc, 0x03]);
    bomb.writeInt32BE(newsId, 1);
    const tick = (marker: string, fields: Record<string, unknown>) => ({
      key: 'ACME',
      value: serde.encode(types[0]!, {
        symbol: 'ACME',
        eventTime: now,
        price: 100,
        bid: null,
        ask: null,
        currency: 'USD',
        venue: '',
        ...fields,
      }),
      headers: { marker },
    });
    const bad = new Map<string, { reason: string; code: string }>();
    const messages: Array<{ key: string; value: Buffer; headers: Record<string, string> }> = [];
    let goodCount = 0;
    for (let i = 0; i < 400; i += 1) {
      if (i === 100) messages.push({ key: 'ACME', value: bomb, headers: { marker: 'bomb' } });
      if (i === 200) messages.push(tick('infinity', { price: Number.POSITIVE_INFINITY }));
      if (i === 250) messages.push(tick('year-3000', { eventTime: Date.UTC(3000, 0, 1) }));
      if (i === 300) messages.push(tick('days-ahead', { eventTime: now + 3 * 86_400_000 }));
      messages.push(good(i));
      goodCount += 1;
    }
    bad.set('bomb', { reason: 'body', code: 'AS_DESERIALIZE' });
    bad.set('infinity', { reason: 'range', code: 'AS_DESERIALIZE' });
    bad.set('year-3000', { reason: 'range', code: 'AS_DESERIALIZE' });
    bad.set('days-ahead', { reason: 'event-time-ahead', code: 'AS_RECORD_OUT_OF_RANGE' });
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic: input, acks: -1, messages });
    await producer.disconnect();

    const handle = await runProcessor({ config, topology, processor: 'watcher' });
    const deadline = Date.now() + 90_000;
    while (handle.stats.records < messages.length && Date.now() < deadline) await sleep(200);
    // Still up: a second look after the bad records finds it consuming and its heap small.
    expect(handle.stats.records).toBe(messages.length);
    expect(process.memoryUsage().heapUsed).toBeLessThan(1024 * 1024 * 1024);
    await handle.stop();
    expect(handle.stats.deadLettered).toBe(bad.size);

    const dead = await read(kafka, topology.deadLetterTopic, bad.size);
    expect(dead.map((d) => d.headers.marker).sort()).toEqual([...bad.keys()].sort());
    for (const d of dead) {
      const expected = bad.get(d.headers.marker!)!;
      expect(d.headers[deadLetterHeader.topic]).toBe(input);
      expect(d.headers[deadLetterHeader.stage]).toBe('deserialize');
      expect(d.headers[deadLetterHeader.errorCode], d.headers.marker).toBe(expected.code);
      expect(d.headers[deadLetterHeader.errorReason], d.headers.marker).toBe(expected.reason);
    }
    const byMarker = new Map(dead.map((d) => [d.headers.marker!, d.headers[deadLetterHeader.errorMessage]!]));
    expect(byMarker.get('bomb')).toContain(
      'array block count 500000000 exceeds the 0 bytes left at offset 2 (field symbols)',
    );
    expect(byMarker.get('infinity')).toContain('field price is Infinity, outside its documented range (> 0, finite)');
    expect(byMarker.get('year-3000')).toContain(
      `field eventTime is ${Date.UTC(3000, 0, 1)}, outside its documented range`,
    );
    expect(byMarker.get('days-ahead')).toMatch(
      /ms ahead of the wall clock .* more than records.maxEventTimeAheadMs = 86400000/,
    );

    const output = await read(kafka, seen, goodCount);
    expect(output).toHaveLength(goodCount);
    expect(new Set(output.map((o) => o.headers.marker)).size).toBe(goodCount);
  }, 180_000);
});
