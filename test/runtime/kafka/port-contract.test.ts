/**
 * The Kafka port's contract (runtime/kafka/port.ts), the same tests on every client behind it, against the local
 * broker: transactions seen only once committed under read_committed and aborted ones never, an old transactional
 * producer fenced by a new one with its id, consumed offsets (with metadata) committed in a transaction, keys on the
 * partition kafkajs (and the Java client) would choose, keys kept whole, and a consumer that reports its assignment
 * on GROUP_JOIN and re-delivers a failed batch from its last resolved offset.
 *
 * The optional confluent client may be absent: its tests are then skipped, saying so — except in CI, whose set-up
 * installs what it needs to build (`.ci/run`): there a missing package fails the run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logLevel } from 'kafkajs';
import { kafkaClient } from '../../../runtime/kafka/client.ts';
import { confluentAvailable } from '../../../runtime/kafka/confluent/common.ts';
import type {
  EachBatchPayload,
  KafkaAdmin,
  KafkaClientName,
  KafkaConsumer,
  KafkaPort,
} from '../../../runtime/kafka/port.ts';
import { config, uniqueName } from '../../support/stack.ts';

const confluentInstalled = confluentAvailable();
if (!confluentInstalled && process.env.CI === 'true')
  throw new Error('CI=true: @confluentinc/kafka-javascript did not build at `npm install` (see docs/kafka-clients.md)');
if (!confluentInstalled)
  console.warn(
    'skipping the confluent client: @confluentinc/kafka-javascript is not installed (docs/kafka-clients.md)',
  );

const clients: KafkaClientName[] = ['kafkajs', 'platformatic', ...(confluentInstalled ? ['confluent' as const] : [])];

function clientOf(name: KafkaClientName): KafkaPort {
  return kafkaClient({ ...config, kafka: { ...config.kafka, client: name } }, `contract-${name}`, {
    logLevel: logLevel.NOTHING,
  });
}

const reference = clientOf('kafkajs');

async function retryConcurrent<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if ((error as { type?: string }).type !== 'CONCURRENT_TRANSACTIONS' || attempt >= 20) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe.each(clients)('the Kafka port on %s', (name) => {
  const client = clientOf(name);
  let admin: KafkaAdmin;

  beforeAll(async () => {
    admin = client.admin();
    await admin.connect();
  });
  afterAll(async () => {
    await admin.disconnect();
  });

  async function createTopic(partitions = 1): Promise<string> {
    const topic = uniqueName(`contract-${name}`);
    await admin.createTopics({
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    return topic;
  }

  /** Reads `topic` with a read_committed consumer of this client until `until` holds or `ms` pass. */
  async function readAll(
    topic: string,
    ms: number,
    until: (values: string[]) => boolean = () => false,
  ): Promise<string[]> {
    const consumer = client.consumer({
      groupId: uniqueName('contract-read'),
      readUncommitted: false,
      maxWaitTimeInMs: 100,
    });
    const values: string[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        for (const m of batch.messages) values.push(m.value!.toString());
        resolveOffset(batch.lastOffset());
      },
    });
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !until(values)) await new Promise((r) => setTimeout(r, 100));
    await consumer.disconnect();
    return values;
  }

  it('shows a committed transaction and never an aborted one under read_committed', async () => {
    const topic = await createTopic();
    const producer = client.producer({
      transactionalId: uniqueName('contract-tx'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    for (const [i, end] of [
      [1, 'abort'],
      [2, 'abort'],
      [3, 'commit'],
      [4, 'abort'],
      [5, 'commit'],
    ] as const) {
      const txn = await producer.transaction();
      await txn.send({
        topic,
        messages: [
          { key: `k${i}`, value: `${end}-${i}a` },
          { key: `k${i}`, value: `${end}-${i}b` },
        ],
      });
      await (end === 'commit' ? txn.commit() : txn.abort());
    }
    // An open transaction stays invisible while open.
    const open = await producer.transaction();
    await open.send({ topic, messages: [{ value: 'open' }] });
    const whileOpen = await readAll(topic, 3000, (v) => v.length >= 4);
    expect(whileOpen).toEqual(['commit-3a', 'commit-3b', 'commit-5a', 'commit-5b']);
    await open.commit();
    expect(await readAll(topic, 10_000, (v) => v.includes('open'))).toEqual([
      'commit-3a',
      'commit-3b',
      'commit-5a',
      'commit-5b',
      'open',
    ]);
    await producer.disconnect();
  }, 60_000);

  it('fences an older transactional producer with the same id and aborts its open transaction', async () => {
    const topic = await createTopic();
    const id = uniqueName('contract-fence');
    const old = client.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
    await old.connect();
    const zombie = await old.transaction();
    await zombie.send({ topic, messages: [{ value: 'zombie' }] });

    const fresh = client.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
    await fresh.connect();
    const txn = await fresh.transaction();
    await txn.send({ topic, messages: [{ value: 'fresh' }] });
    await txn.commit();

    const error = await zombie.commit().then(
      () => undefined,
      (e: unknown) => e as { name?: string; type?: string },
    );
    expect(error?.name).toBe('KafkaJSProtocolError');
    expect(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH']).toContain(error?.type);
    expect(await readAll(topic, 5000, (v) => v.includes('fresh'))).toEqual(['fresh']);
    await Promise.all([old.disconnect().catch(() => undefined), fresh.disconnect()]);
  }, 60_000);

  it('commits consumed offsets with their metadata in the transaction, only when it commits', async () => {
    const topic = await createTopic(2);
    const groupId = uniqueName('contract-group');
    const producer = client.producer({
      transactionalId: uniqueName('contract-offsets'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    const aborted = await producer.transaction();
    await aborted.sendOffsets({
      consumerGroupId: groupId,
      topics: [{ topic, partitions: [{ partition: 0, offset: '7' }] }],
    });
    await aborted.abort();
    const txn = await producer.transaction();
    // Right after an abort the coordinator may still be completing it: kafkajs then reports the retriable
    // CONCURRENT_TRANSACTIONS, which the runtime's commit path retries like any retriable error.
    await retryConcurrent(() =>
      txn.sendOffsets({
        consumerGroupId: groupId,
        topics: [
          {
            topic,
            partitions: [
              { partition: 0, offset: '42', metadata: '{"c":3}' },
              { partition: 1, offset: '5' },
            ] as never,
          },
        ],
      }),
    );
    await txn.commit();
    // Read back through the reference client: what this client committed is what any reader sees.
    const referenceAdmin = reference.admin();
    await referenceAdmin.connect();
    for (const reader of [admin, referenceAdmin]) {
      const [offsets] = await reader.fetchOffsets({ groupId, topics: [topic] });
      // Metadata written by @confluentinc/kafka-javascript ends in a NUL (its binding appends the C terminator, and
      // strips one when it reads): other clients see it. The runtime's reader ignores a trailing NUL.
      const read = offsets!.partitions.map((p) => {
        const metadata = p.metadata ?? '';
        return { ...p, metadata: metadata.endsWith('\u0000') ? metadata.slice(0, -1) : metadata };
      });
      expect(read).toEqual([
        { partition: 0, offset: '42', metadata: '{"c":3}' },
        { partition: 1, offset: '5', metadata: '' },
      ]);
    }
    await referenceAdmin.disconnect();
    await producer.disconnect();
  }, 60_000);

  it('puts a key on the partition kafkajs (and the Java client) would, and keeps it whole', async () => {
    const topic = await createTopic(7);
    // The changelog's stream-time key starts with a NUL: a client that passes keys as C strings would cut it.
    const keys = ['\u0000stream-time', ...Array.from({ length: 60 }, (_, i) => `key-${i}-${'x'.repeat(i % 11)}`)];
    const producer = client.producer();
    const viaReference = reference.producer();
    await Promise.all([producer.connect(), viaReference.connect()]);
    const where = new Map<string, number[]>();
    for (const p of [producer, viaReference])
      for (const key of keys) {
        const [meta] = await p.send({ topic, acks: -1, messages: [{ key, value: key }] });
        where.set(key, [...(where.get(key) ?? []), meta!.partition]);
      }
    await Promise.all([producer.disconnect(), viaReference.disconnect()]);
    for (const [key, [a, b]] of where) expect({ key, partition: a }).toEqual({ key, partition: b });
    expect(new Set([...where.values()].map(([p]) => p)).size).toBeGreaterThan(3);

    const consumer = client.consumer({ groupId: uniqueName('contract-keys'), maxWaitTimeInMs: 100 });
    const read: string[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages)
          if (m.key!.toString('utf8') === m.value!.toString('utf8')) read.push(m.value!.toString());
      },
    });
    const deadline = Date.now() + 20_000;
    while (read.length < keys.length * 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await consumer.disconnect();
    expect(read.filter((k) => k === keys[0])).toHaveLength(2);
    expect(read).toHaveLength(keys.length * 2);
  }, 60_000);

  describe('consumer', () => {
    let consumer: KafkaConsumer | undefined;
    afterAll(async () => {
      await consumer?.disconnect();
    });

    it('reports its assignment on GROUP_JOIN and re-delivers a failed batch from its last resolved offset', async () => {
      const topic = await createTopic(2);
      const producer = client.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      await producer.send({
        topic,
        acks: -1,
        messages: Array.from({ length: 10 }, (_, i) => ({
          partition: 0,
          value: `v${i}`,
          headers: { h: `x${i}` },
          timestamp: String(1_700_000_000_000 + i),
        })),
      });
      await producer.disconnect();

      consumer = client.consumer({
        groupId: uniqueName('contract-redeliver'),
        readUncommitted: false,
        maxWaitTimeInMs: 100,
        retry: { retries: 0 },
      });
      const joins: Array<Record<string, number[]>> = [];
      const crashes: Array<{ restart: boolean; message: string }> = [];
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => joins.push(payload.memberAssignment));
      consumer.on(consumer.events.CRASH, ({ payload }) =>
        crashes.push({ restart: payload.restart, message: payload.error.message }),
      );
      const seen: string[] = [];
      let failed = false;
      const batches: EachBatchPayload['batch'][] = [];
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 2,
        eachBatch: async ({ batch, resolveOffset }) => {
          batches.push(batch);
          for (const m of batch.messages) {
            if (m.offset === '6' && !failed) {
              failed = true;
              throw new Error('handler failed at offset 6');
            }
            seen.push(`${m.offset}:${m.value!.toString()}:${m.headers!.h!.toString()}:${m.timestamp}`);
            resolveOffset(m.offset);
          }
        },
      });
      const deadline = Date.now() + 30_000;
      while (seen.length < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(joins[0]).toEqual({ [topic]: [0, 1] });
      expect(crashes.map((c) => c.message)).toEqual(['handler failed at offset 6']);
      expect(crashes[0]!.restart).toBe(true);
      // Offsets 0..5, then 6..9 after the failure: nothing lost, every record whole. The adapters re-deliver from the
      // last resolved offset; kafkajs restarts the consumer, which starts again from the committed offset (none
      // here), so 0..5 come twice — the runtime skips what its own transactions already covered.
      const record = (i: number): string => `${i}:v${i}:x${i}:${1_700_000_000_000 + i}`;
      const first = Array.from({ length: 6 }, (_, i) => record(i));
      const rest = [6, 7, 8, 9].map(record);
      expect(seen).toEqual(name === 'kafkajs' ? [...first, ...first, ...rest] : [...first, ...rest]);
      expect(batches.every((b) => b.topic === topic && b.partition === 0)).toBe(true);
      expect(batches.at(-1)!.lastOffset()).toBe('9');
      expect(batches.at(-1)!.highWatermark).toBe('10');
      expect(batches.at(-1)!.offsetLag()).toBe('0');
    }, 60_000);
  });
});
