/**
 * Poison pills on the real stack: 1% of 20k records are bad in four ways (not Confluent-framed, unknown schema id,
 * truncated Avro body, refused by the processor). Every bad record lands once in the dead-letter topic with
 * headers naming its origin and the failure; every good record is processed; the partition never stops.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { deadLetterHeader } from '../../../runtime/engine/dead-letter.ts';
import { checkedSumTopology } from '../../fixtures/topologies/checked-sum.ts';
import { listDeadLetters, redriveDeadLetters } from '../../../runtime/engine/redrive.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { mulberry32 } from '../../support/events.ts';

const root = join(import.meta.dirname, '../../..');

describe('dead letters on the real stack', () => {
  it('sends every poison pill to the dead-letter topic with its reason and processes every good record', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('poison').replaceAll('_', '-');
    const input = `${application}.input`;
    const topology = checkedSumTopology(application, input);
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    const { id } = await serde.writerFor('agentstreams.test.Event');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: input, numPartitions: 6 }], waitForLeaders: true });

    const random = mulberry32(99);
    const kinds = ['magic-byte', 'unknown-schema', 'body', 'process'] as const;
    const expectedBad = new Map<string, (typeof kinds)[number]>();
    const sums = new Map<string, number>();
    let good = 0;
    const messages = Array.from({ length: 20_000 }, (_, i) => {
      const key = `k${i % 50}`;
      const event = { key, eventTime: 1_767_225_600_000 + i, amount: Math.floor(random() * 10) };
      if (i % 100 === 37) {
        const kind = kinds[((i / 100) % 4) | 0]!;
        expectedBad.set(`${key}#${i}`, kind);
        const headers = { marker: `${key}#${i}` };
        if (kind === 'magic-byte') return { key, value: Buffer.from(JSON.stringify(event)), headers };
        if (kind === 'unknown-schema') {
          const value = serde.encode('agentstreams.test.Event', event);
          value.writeInt32BE(2_000_000_000, 1);
          return { key, value, headers };
        }
        if (kind === 'body')
          return { key, value: serde.encode('agentstreams.test.Event', event).subarray(0, 6), headers };
        return { key, value: serde.encode('agentstreams.test.Event', { ...event, amount: -1 }), headers };
      }
      good += 1;
      sums.set(key, (sums.get(key) ?? 0) + event.amount);
      return { key, value: serde.encode('agentstreams.test.Event', event), headers: { marker: `${key}#${i}` } };
    });
    expect(id).toBeGreaterThan(0);
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    for (let i = 0; i < messages.length; i += 5000)
      await producer.send({ topic: input, acks: -1, messages: messages.slice(i, i + 5000) });
    await producer.disconnect();

    const handle = await runProcessor({ config, topology, processor: 'checker' });
    const deadline = Date.now() + 120_000;
    while (handle.stats.records < messages.length && Date.now() < deadline) await sleep(200);
    await handle.stop();
    expect(handle.stats.records).toBe(messages.length);
    expect(handle.stats.deadLettered).toBe(expectedBad.size);

    // Read the dead letters and the output back.
    const read = async (
      topic: string,
      count: number,
    ): Promise<Array<{ key: string; headers: Record<string, string> }>> => {
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
      await sleep(500); // anything beyond `count` would be a duplicate: give it a moment to show up
      await consumer.disconnect();
      return out;
    };
    const dead = await read(topology.deadLetterTopic, expectedBad.size);
    expect(dead).toHaveLength(expectedBad.size);
    const reasons = new Map(dead.map((d) => [d.headers.marker!, d.headers]));
    for (const [marker, kind] of expectedBad) {
      const h = reasons.get(marker);
      expect(h, marker).toBeDefined();
      expect(h![deadLetterHeader.topic]).toBe(input);
      expect(Number(h![deadLetterHeader.offset])).toBeGreaterThanOrEqual(0);
      expect(h![deadLetterHeader.processor]).toBe('checker');
      expect(h![deadLetterHeader.stage]).toBe(kind === 'process' ? 'process' : 'deserialize');
      expect(h![deadLetterHeader.errorCode]).toBe(kind === 'process' ? 'AS_PROCESS' : 'AS_DESERIALIZE');
      if (kind === 'process') expect(h![deadLetterHeader.errorMessage]).toBe('amount -1 is negative');
    }
    const output = await read(`${application}.checked`, good);
    expect(output).toHaveLength(good);

    // State saw exactly the good records.
    const redis = new Redis(config.redis.url);
    for (const [key, sum] of sums) {
      const partitions = await Promise.all(
        Array.from({ length: 6 }, (_, p) => redis.get(`as:{${application}.checker:${p}}:s:sums:${key}`)),
      );
      const stored = partitions.find((v) => v !== null);
      expect(JSON.parse(stored!).v, key).toBe(sum);
    }
    redis.disconnect();

    // The CLI's view of them, and a re-drive that sends each back to its source exactly once.
    const listed = await listDeadLetters(kafka, topology.deadLetterTopic, 1000);
    expect(listed).toHaveLength(expectedBad.size);
    expect(new Set(listed.map((d) => d.source.topic))).toEqual(new Set([input]));
    const before = (await admin.fetchTopicOffsets(input)).reduce((n, o) => n + Number(o.high), 0);
    const group = `${application}.dead-letters-redrive`;
    const groupOf = (processor: string): string => topology.groupId(processor);
    expect(await redriveDeadLetters(kafka, topology.deadLetterTopic, group, { groupOf })).toBe(expectedBad.size);
    expect(await redriveDeadLetters(kafka, topology.deadLetterTopic, group, { groupOf })).toBe(0);
    const after = (await admin.fetchTopicOffsets(input)).reduce((n, o) => n + Number(o.high), 0);
    // Each re-driven record is one record plus one transaction marker.
    expect(after - before).toBe(expectedBad.size * 2);
    await admin.disconnect();

    // The re-driven records went back to the input, which another consumer group reads too: that group skips them
    // (it dead-letters the bad records once, as they first came, never the re-driven copies a second time), while
    // the group that dead-lettered them gets them again.
    const other = await runProcessor({
      config,
      topology: checkedSumTopology(`${application}-other`, input),
      processor: 'checker',
    });
    const again = await runProcessor({ config, topology, processor: 'checker' });
    const total = messages.length + expectedBad.size;
    const until = Date.now() + 120_000;
    while ((other.stats.records < total || again.stats.records < expectedBad.size) && Date.now() < until)
      await sleep(200);
    await other.stop();
    await again.stop();
    expect(other.stats.records).toBe(total);
    expect(other.stats.deadLettered).toBe(expectedBad.size);
    expect(again.stats.records).toBe(expectedBad.size); // only the re-driven records were new to it
    expect(again.stats.deadLettered).toBe(expectedBad.size); // their causes were not mended: dead-lettered again
  }, 180_000);
});
