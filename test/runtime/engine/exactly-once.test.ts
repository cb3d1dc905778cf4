/**
 * Exactly-once on the real stack: a windowed count over 100k seeded events on 6 partitions, run once without
 * failures (the reference) and once with two member processes of which one is killed with SIGKILL at random
 * moments at least ten times, and then with Redis flushed mid-run. Output topics (read as they are, nothing
 * deduplicated) and window state must equal the reference exactly.
 */
import { startMember, stopMembers, type Member } from '../../../cli/fleet.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { KafkaPort } from '../../../runtime/kafka/port.ts';
import { registryClient, AvroSerde } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';
import { adminRedisUrl, config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { mulberry32, seededEvents, type TestEvent } from '../../support/events.ts';
import { TopologyTestDriver } from '../../../runtime/testing/driver.ts';

const root = join(import.meta.dirname, '../../..');
const EVENTS = Number(process.env.EOS_EVENTS ?? 100_000);

async function createInput(kafka: KafkaPort, topic: string): Promise<void> {
  await registerSchemas(config, registryClient(config), loadSchemas(join(root, 'test/fixtures/schemas')));
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
  await admin.disconnect();
}

/** Produces `events` in order at about `perSecond`, keyed, with kafkajs' default (murmur2) partitioner. */
async function produceEvents(kafka: KafkaPort, topic: string, events: TestEvent[], perSecond: number): Promise<void> {
  const serde = new AvroSerde(registryClient(config));
  await serde.writerFor('agentstreams.test.Event');
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  const chunk = Math.max(1, Math.floor(perSecond / 4));
  for (let i = 0; i < events.length; i += chunk) {
    const started = Date.now();
    await producer.send({
      topic,
      acks: -1,
      messages: events
        .slice(i, i + chunk)
        .map((e) => ({ key: e.key, value: serde.encode('agentstreams.test.Event', e) })),
    });
    await sleep(Math.max(0, 250 - (Date.now() - started)));
  }
  await producer.disconnect();
}

/** Records still to be processed by the group: end offsets minus committed offsets, summed. */
async function lag(kafka: KafkaPort, groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return ends.reduce((sum, end) => {
      const c = committed?.partitions.find((p) => p.partition === end.partition);
      const at = c && Number(c.offset) >= 0 ? Number(c.offset) : 0;
      return sum + Math.max(0, Number(end.high) - at);
    }, 0);
  } finally {
    await admin.disconnect();
  }
}

async function waitForLag(kafka: KafkaPort, groupId: string, topic: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await lag(kafka, groupId, topic)) > 0) {
    if (Date.now() > deadline) throw new Error(`group ${groupId} did not catch up within ${timeoutMs} ms`);
    await sleep(500);
  }
}

/** Every record of a topic (read_committed), grouped by key in offset order. */
async function readAllByKey(kafka: KafkaPort, topic: string): Promise<Map<string, string[]>> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const target = new Map(ends.map((e) => [e.partition, Number(e.high)]));
  const serde = new AvroSerde(registryClient(config));
  const byKey = new Map<string, string[]>();
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Map<number, number>();
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      // Transaction markers occupy offsets: a partition is read when a fetch returns nothing more below its end.
      if ([...target].every(([p, end]) => (seen.get(p) ?? -1) >= end - 2 || end === 0)) resolve();
    };
    const timer = setInterval(check, 500);
    consumer
      .run({
        eachBatch: async ({ batch }) => {
          await serde.resolve(batch.messages.map((m) => m.value));
          for (const m of batch.messages) {
            const value = serde.decodeResolved(m.value).value;
            const key = m.key!.toString();
            const list = byKey.get(key) ?? [];
            list.push(JSON.stringify(value));
            byKey.set(key, list);
            seen.set(batch.partition, Number(m.offset));
          }
          if (batch.messages.length === 0) seen.set(batch.partition, Number(batch.highWatermark));
        },
      })
      .catch(reject);
    setTimeout(() => {
      clearInterval(timer);
      resolve();
    }, 20_000);
  });
  await consumer.disconnect();
  return byKey;
}

/** The application's window state in Redis: `partition/store:key` → stored entry. */
async function windowState(application: string): Promise<Map<string, string>> {
  const redis = new Redis(config.redis.url);
  const out = new Map<string, string>();
  try {
    for (let p = 0; p < 6; p += 1) {
      const prefix = `as:{${application}.counter:${p}}:s:`;
      const keys = await redis.keys(`${prefix}*`);
      const values = keys.length > 0 ? await redis.mget(keys) : [];
      keys.forEach((k, i) =>
        out.set(`${p}/${k.slice(prefix.length)}`, JSON.stringify((JSON.parse(values[i]!) as { v: unknown }).v)),
      );
    }
  } finally {
    redis.disconnect();
  }
  return out;
}

function member(application: string, input: string): Member {
  return startMember(join(root, 'test/fixtures/topologies/window-count.ts'), 'counter', {
    AS_FIXTURE_APP: application,
    AS_FIXTURE_INPUT: input,
    AS_CONSUMER_MAX_BYTES_PER_PARTITION: '8192',
    AS_CONSUMER_SESSION_TIMEOUT_MS: '6000',
    // Small batches gathered over 300 ms into one transaction: a SIGKILL mostly lands with several batches
    // processed but uncommitted (the in-memory overlay lost), which the restart must redo exactly.
    AS_COMMIT_INTERVAL_MS: '300',
  });
}

/** What the test driver computes for the same input: the crash-free reference, with no broker involved. */
function driverReference(
  events: TestEvent[],
  application: string,
  input: string,
): { output: Map<string, string[]>; state: Map<string, string> } {
  const schemas = loadSchemas(join(root, 'test/fixtures/schemas'));
  const driver = new TopologyTestDriver(windowCountTopology(application, input), schemas);
  for (const e of events) driver.pipe(input, { key: e.key, value: e, recordType: 'agentstreams.test.Event' });
  const output = new Map<string, string[]>();
  for (const record of driver.readOutput(`${application}.counts`)) {
    const list = output.get(record.key!) ?? [];
    list.push(JSON.stringify(record.value));
    output.set(record.key!, list);
  }
  return { output, state: driver.storeContents('counter', 'counts') };
}

describe('exactly-once results under crashes, Redis loss and scale-out', () => {
  const kafka = kafkaClient();
  const base = uniqueName('eos').replaceAll('_', '-');
  const input = `${base}.input`;
  const events = seededEvents(EVENTS, 200, 42);
  const children: Member[] = [];
  let production: Promise<void>;
  let producing = true;

  beforeAll(async () => {
    await createInput(kafka, input);
  }, 60_000);

  afterAll(async () => {
    await stopMembers(children);
  });

  it('gives the reference output and state after 10+ SIGKILLs of one of two members and a Redis FLUSHALL, while a scaled-out group runs beside it', async () => {
    const chaos = `${base}-chaos`;
    const scaled = `${base}-scale`;
    const members = [member(chaos, input), member(chaos, input)];
    children.push(...members);
    const scaledTopology = windowCountTopology(scaled, input);
    const scaledOptions = {
      config: { ...config, consumer: { ...config.consumer, maxBytesPerPartition: 8192, sessionTimeoutMs: 6000 } },
      topology: scaledTopology,
      processor: 'counter',
    };
    const scaledMembers = [await runProcessor(scaledOptions), await runProcessor(scaledOptions)];

    // Input arrives over ~40 s while the members work, so every kill lands mid-stream.
    production = produceEvents(kafka, input, events, 2500).finally(() => (producing = false));
    const random = mulberry32(7);
    let killsMidStream = 0;
    let flushed = false;
    let third: Awaited<ReturnType<typeof runProcessor>> | undefined;
    while (producing) {
      await sleep(1500 + Math.floor(random() * 2500));
      if (!producing) break;
      const i = random() < 0.5 ? 0 : 1;
      members[i]!.child.kill('SIGKILL');
      killsMidStream += 1;
      members[i] = member(chaos, input);
      children.push(members[i]!);
      if (killsMidStream === 3) third = await runProcessor(scaledOptions); // a third member joins mid-stream…
      if (killsMidStream === 6) await third?.stop(); // …and leaves again
      if (killsMidStream === 8 && !flushed) {
        const redis = new Redis(adminRedisUrl()); // FLUSHALL is the administrator's, not the fleet user's
        await redis.flushall();
        redis.disconnect();
        flushed = true;
      }
    }
    await production;
    expect(killsMidStream).toBeGreaterThanOrEqual(10);
    expect(flushed).toBe(true);
    expect(third?.stats.batches).toBeGreaterThan(0);

    const reference = driverReference(events, 'ref', input);
    expect([...reference.output.values()].reduce((n, l) => n + l.length, 0)).toBeGreaterThan(1000);

    await waitForLag(kafka, `${chaos}.counter`, input, 240_000);
    // Graceful shutdown: both members leave the group and exit 0 within the deadline.
    expect(await stopMembers(members)).toEqual([0, 0]);
    expect(await readAllByKey(kafka, `${chaos}.counts`)).toEqual(reference.output);
    expect(await windowState(chaos)).toEqual(reference.state);

    await waitForLag(kafka, `${scaled}.counter`, input, 240_000);
    await Promise.all(scaledMembers.map((m) => m.stop()));
    expect(await readAllByKey(kafka, `${scaled}.counts`)).toEqual(reference.output);
    expect(await windowState(scaled)).toEqual(reference.state);
  }, 600_000);
});
