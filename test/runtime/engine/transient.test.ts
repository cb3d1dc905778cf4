/**
 * A transient outage is waited out, never skipped: Redis is stopped while a windowed count runs and started
 * again a few seconds later; the results equal the test driver's over the same input.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { TopologyTestDriver } from '../../../runtime/testing/driver.ts';
import { createStackContext, stackUp, stackDown } from '../../../infra/local/stack.ts';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { seededEvents } from '../../support/events.ts';
import { testStackKind } from '../../support/stack-kind.ts';

const root = join(import.meta.dirname, '../../..');

describe.runIf(testStackKind === 'local')('transient Redis outage', () => {
  it('pauses while Redis is down and loses or repeats nothing', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('outage').replaceAll('_', '-');
    const input = `${application}.input`;
    const topology = windowCountTopology(application, input);
    const schemas = loadSchemas(join(root, 'test/fixtures/schemas'));
    const registry = registryClient(config);
    await registerSchemas(config, registry, schemas);
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: input, numPartitions: 6 }], waitForLeaders: true });

    const events = seededEvents(20_000, 50, 3);
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    let retries = 0;
    const handle = await runProcessor({
      config: { ...config, consumer: { ...config.consumer, maxBytesPerPartition: 4096 } },
      topology,
      processor: 'counter',
      log: (event) => {
        if (event === 'state.retry') retries += 1;
      },
    });
    const ctx = createStackContext(config, root);
    try {
      for (let i = 0; i < events.length; i += 1000) {
        await producer.send({
          topic: input,
          acks: -1,
          messages: events
            .slice(i, i + 1000)
            .map((e) => ({ key: e.key, value: serde.encode('agentstreams.test.Event', e) })),
        });
        if (i === 8000) {
          await stackDown(ctx, ['redis']);
          await sleep(3000);
          await stackUp(ctx, ['redis']);
        }
      }
      await producer.disconnect();
      const deadline = Date.now() + 120_000;
      while (handle.stats.records < events.length && Date.now() < deadline) await sleep(200);
    } finally {
      await stackUp(ctx, ['redis']);
      await handle.stop();
      await admin.disconnect();
    }
    expect(handle.stats.records).toBe(events.length);
    // The outage was felt: the task waited on Redis instead of going on.
    expect(retries).toBeGreaterThan(0);

    const driver = new TopologyTestDriver(windowCountTopology(application, input), schemas);
    for (const e of events) driver.pipe(input, { key: e.key, value: e, recordType: 'agentstreams.test.Event' });
    const expected = driver.readOutput(`${application}.counts`).length;
    const counted: unknown[] = [];
    const consumer = kafka.consumer({ groupId: uniqueName('reader'), readUncommitted: false, maxWaitTimeInMs: 100 });
    await consumer.connect();
    await consumer.subscribe({ topic: `${application}.counts`, fromBeginning: true });
    await consumer.run({ eachMessage: async ({ message }) => void counted.push(message.offset) });
    const until = Date.now() + 20_000;
    while (counted.length < expected && Date.now() < until) await sleep(100);
    await sleep(1000);
    await consumer.disconnect();
    expect(counted).toHaveLength(expected);
  }, 240_000);
});
