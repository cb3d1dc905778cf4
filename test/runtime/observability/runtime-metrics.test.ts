/**
 * The runtime's metrics on the real stack, read from a member's own registry: consumer lag read from the broker keeps
 * rising while the member is stalled (its enrichment blocked) and input keeps arriving, and falls once it is freed;
 * transactions, end-to-end latency, state operations and state size are recorded.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { Gauge } from 'prom-client';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const LAG_INTERVAL_MS = 250;
const fastLag = { ...config, metrics: { ...config.metrics, lagIntervalMs: LAG_INTERVAL_MS } };

async function total(gauge: Pick<Gauge, 'get'>, filter: Record<string, string> = {}): Promise<number> {
  const { values } = await gauge.get();
  return values
    .filter((v) => Object.entries(filter).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((n, v) => n + v.value, 0);
}

async function setup(): Promise<AvroSerde> {
  const registry = registryClient(config);
  await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
  const serde = new AvroSerde(registry);
  await serde.writerFor('agentstreams.test.Event');
  return serde;
}

describe('runtime metrics on the real stack', () => {
  it('consumer lag, read from the broker on a timer, rises while a member is stalled and input keeps arriving', async () => {
    const serde = await setup();
    const kafka = kafkaClient();
    const application = uniqueName('lag').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.out`;
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 2 }, [output]: { partitions: 2 } },
      processors: {
        enricher: processor({
          inputs: [input],
          outputs: { [output]: ['agentstreams.test.Event'] },
          enrich: { service: 'gate', request: (record) => (record.value as { amount: number }).amount },
          process: (record, ctx) =>
            ctx.forward({ topic: output, key: record.key, recordType: 'agentstreams.test.Event', value: record.value }),
        }),
      },
    });
    // The stall: every enrichment waits until the test opens the gate (the event loop, and so the timer, runs on).
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => (open = resolve));
    let blocked = 0;
    const service = async (requests: ReadonlyMap<string, unknown>): Promise<Map<string, unknown>> => {
      blocked += 1;
      await gate;
      return new Map([...requests].map(([offset, amount]) => [offset, amount]));
    };

    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    let sent = 0;
    const send = async (n: number): Promise<void> => {
      const messages = Array.from({ length: n }, (_, i) => {
        const key = `k${(sent + i) % 16}`;
        return {
          key,
          value: serde.encode('agentstreams.test.Event', { key, eventTime: Date.now(), amount: sent + i }),
        };
      });
      await producer.send({ topic: input, acks: -1, messages });
      sent += n;
    };

    const metrics = createMetrics({ processMetrics: false });
    const handle = await runProcessor({
      config: fastLag,
      topology,
      processor: 'enricher',
      metrics,
      services: { gate: service },
    });
    try {
      await handle.joined;
      await send(20);
      const deadline = Date.now() + 30_000;
      while (blocked === 0 && Date.now() < deadline) await sleep(50);
      expect(blocked).toBeGreaterThan(0);

      // Input keeps arriving while the member is stuck: each reading of the gauge must be above the one before.
      const readings: number[] = [];
      for (let round = 0; round < 6; round += 1) {
        await send(25);
        await sleep(LAG_INTERVAL_MS * 3);
        readings.push(await total(metrics.consumerLag, { processor: 'enricher' }));
      }
      for (let i = 1; i < readings.length; i += 1) expect(readings[i]!).toBeGreaterThan(readings[i - 1]!);
      expect(readings.at(-1)).toBeGreaterThanOrEqual(sent - 20);
      expect(await total(metrics.transactionsCommitted)).toBe(0);

      // Freed, it catches up and the lag, still read from the broker, falls to nothing.
      open();
      const caughtUp = Date.now() + 60_000;
      while (handle.stats.records < sent && Date.now() < caughtUp) await sleep(100);
      expect(handle.stats.records).toBe(sent);
      await sleep(LAG_INTERVAL_MS * 3);
      expect(await total(metrics.consumerLag, { processor: 'enricher' })).toBe(0);
      expect(await total(metrics.transactionsCommitted, { processor: 'enricher' })).toBeGreaterThan(0);
      const latency = (await metrics.endToEndLatency.get()).values.find(
        (v) => v.metricName === 'agent_streams_end_to_end_latency_seconds_count',
      );
      expect(latency?.value).toBe(sent);
      expect((await metrics.consumerLagSampled.get()).values[0]?.value).toBeGreaterThan(Date.now() / 1000 - 5);
    } finally {
      open();
      await handle.stop();
      await producer.disconnect();
    }
  }, 120_000);

  it('state operations, state size and open windows are recorded for a windowed processor', async () => {
    const serde = await setup();
    const kafka = kafkaClient();
    const application = uniqueName('state-metrics').replaceAll('_', '-');
    const input = `${application}.input`;
    const topology = windowCountTopology(application, input);
    const metrics = createMetrics({ processMetrics: false });
    const handle = await runProcessor({ config: fastLag, topology, processor: 'counter', metrics });
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    try {
      await handle.joined;
      // 12 keys, each in one open one-minute window (no later record closes them).
      const start = 1_767_225_600_000;
      await producer.send({
        topic: input,
        acks: -1,
        messages: Array.from({ length: 120 }, (_, i) => ({
          key: `k${i % 12}`,
          value: serde.encode('agentstreams.test.Event', { key: `k${i % 12}`, eventTime: start + i * 100, amount: 1 }),
        })),
      });
      const deadline = Date.now() + 60_000;
      while (handle.stats.records < 120 && Date.now() < deadline) await sleep(100);
      expect(handle.stats.records).toBe(120);
      // The gauges are set when a batch reads its state: one more batch shows the state the first ones left.
      await producer.send({
        topic: input,
        acks: -1,
        messages: Array.from({ length: 12 }, (_, i) => ({
          key: `k${i}`,
          value: serde.encode('agentstreams.test.Event', { key: `k${i}`, eventTime: start + 20_000, amount: 1 }),
        })),
      });
      while (handle.stats.records < 132 && Date.now() < deadline) await sleep(100);

      expect(await total(metrics.stateKeys, { processor: 'counter' })).toBe(12);
      expect(await total(metrics.windowsOpen, { processor: 'counter' })).toBe(12);
      const bytes = await total(metrics.stateBytes, { processor: 'counter' });
      expect(bytes).toBeGreaterThan(12 * 10);
      expect(bytes).toBeLessThan(12 * 1000);
      const ops = (await metrics.stateOperationDuration.get()).values.filter(
        (v) => v.metricName === 'agent_streams_state_operation_duration_seconds_count',
      );
      expect(Object.fromEntries(ops.map((v) => [v.labels.operation, v.value > 0]))).toEqual({
        read: true,
        apply: true,
      });
      expect(await total(metrics.stateOperationErrors)).toBe(0);
      expect(await total(metrics.transactionsAborted)).toBe(0);
    } finally {
      await handle.stop();
      await producer.disconnect();
    }
  }, 120_000);
});
