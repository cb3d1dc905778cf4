/**
 * The broker SIGKILLed mid-stream and started again while a member processes: the member rides it out (failed
 * commits recreate the partition's transactional producer, which aborts what was open) and the output, read
 * read_committed, holds every input exactly once. Runs on a private broker; the shared stack is never touched.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { checkedSumTopology } from '../../fixtures/topologies/checked-sum.ts';
import { startPrivateBroker, type PrivateBroker } from '../../support/private-broker.ts';
import { uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');

describe('a broker restart under a running member', () => {
  let broker: PrivateBroker;
  beforeAll(async () => {
    broker = await startPrivateBroker('broker-restart');
  }, 180_000);
  afterAll(async () => {
    await broker?.remove();
  });

  it('SIGKILL the broker mid-stream, start it again 5 s later: every record committed, and output exactly once', async () => {
    const { config, kafka } = broker;
    const application = uniqueName('restart').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.checked`;
    const topology = checkedSumTopology(application, input);
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: input, numPartitions: 6 }], waitForLeaders: true });
    await admin.disconnect();

    const count = 60_000;
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    for (let i = 0; i < count; i += 5_000) {
      await producer.send({
        topic: input,
        acks: -1,
        messages: Array.from({ length: 5_000 }, (_, j) => ({
          key: `k${(i + j) % 60}`,
          value: serde.encode('agentstreams.test.Event', {
            key: `k${(i + j) % 60}`,
            eventTime: 1_767_225_600_000 + i + j,
            amount: i + j,
          }),
        })),
      });
    }
    await producer.disconnect();

    const errors: string[] = [];
    let processedAtRestart: number;
    // Small fetches: many batches, so the broker dies between and inside commits.
    const member = await runProcessor({
      config: { ...config, consumer: { ...config.consumer, maxBytesPerPartition: 16 * 1024 } },
      topology,
      processor: 'checker',
      log: (event, fields) =>
        (event.endsWith('error') || event.startsWith('task.')) && errors.push(`${event}: ${String(fields?.message)}`),
    });
    try {
      while (member.stats.records < count / 30) await sleep(5);
      await broker.kill();
      const processedAtKill = member.stats.records;
      await sleep(5_000);
      await broker.restart();
      processedAtRestart = member.stats.records;
      // Done when the group's committed offsets reach the input's end. (Not the member's own count: a batch whose
      // commit was in flight when the broker died may be counted once by the member and, its transaction aborted
      // after the restart, processed and counted again; the output below is what must hold each record once.)
      const ends = new Map<number, number>();
      const watcher = kafka.admin();
      await watcher.connect();
      for (const o of await watcher.fetchTopicOffsets(input)) ends.set(o.partition, Number(o.high));
      const deadline = Date.now() + 150_000;
      const behind = async (): Promise<number> => {
        const [committed] = await watcher.fetchOffsets({ groupId: topology.groupId('checker'), topics: [input] });
        return (committed?.partitions ?? []).reduce(
          (n, p) => n + Math.max(0, (ends.get(p.partition) ?? 0) - Number(p.offset)),
          0,
        );
      };
      while ((await behind()) > 0 && Date.now() < deadline) await sleep(500);
      const left = await behind();
      await watcher.disconnect();
      expect(processedAtKill).toBeLessThan(count);
      expect(left).toBe(0);
    } finally {
      await member.stop();
    }
    // The broker died mid-stream: work was left when it came back, and it was done (the committed offsets above).
    expect(processedAtRestart).toBeLessThan(count);
    console.log(
      `broker restart: ${errors.length} errors, e.g. ${[...new Set(errors.map((e) => e.slice(0, 120)))].slice(0, 4).join(' / ')}`,
    );

    // The output, read_committed: each input amount exactly once.
    const amounts = new Map<number, number>();
    const reader = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await reader.connect();
    await reader.subscribe({ topic: output, fromBeginning: true });
    let idleSince = Date.now();
    await reader.run({
      eachBatch: async ({ batch }) => {
        idleSince = Date.now();
        await serde.resolve(batch.messages.map((m) => m.value));
        for (const m of batch.messages) {
          const { amount } = serde.decodeResolved<{ amount: number }>(m.value).value;
          amounts.set(Number(amount), (amounts.get(Number(amount)) ?? 0) + 1);
        }
      },
    });
    const readDeadline = Date.now() + 60_000;
    while ((amounts.size < count || Date.now() - idleSince < 2_000) && Date.now() < readDeadline) await sleep(100);
    await reader.disconnect();
    expect(amounts.size).toBe(count);
    expect([...amounts].filter(([, n]) => n !== 1).slice(0, 5)).toEqual([]);
  }, 300_000);
});
