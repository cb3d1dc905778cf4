/**
 * Member health tells the truth: not ready while the group rebalances, and not live while
 * records wait and no batch completes (here an enrichment service that hangs): what /healthz and /readyz serve.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor, type MemberHealth, type ProcessorHandle } from '../../../runtime/engine/runner.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { startPrivateBroker } from '../../support/private-broker.ts';
import { Redis } from 'ioredis';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';

const root = join(import.meta.dirname, '../../..');

async function until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('member health on the real stack', () => {
  it('is not ready while rebalancing, and not live while a batch hangs with records waiting', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('health').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.out`;
    const waiting: Array<() => void> = [];
    const release = (): void => waiting.splice(0).forEach((resume) => resume());
    let hang = true;
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 2 }, [output]: { partitions: 2 } },
      processors: {
        worker: processor({
          inputs: [input],
          outputs: { [output]: ['agentstreams.test.Event'] },
          enrich: { service: 'maybe-hangs', request: () => 1 },
          process: (record, ctx) =>
            ctx.forward({ topic: output, key: record.key, recordType: 'agentstreams.test.Event', value: record.value }),
        }),
      },
    });
    const service = async (requests: ReadonlyMap<string, unknown>): Promise<Map<string, unknown>> => {
      if (hang) await new Promise<void>((resolve) => waiting.push(resolve));
      return new Map([...requests.keys()].map((k) => [k, 1]));
    };
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');

    // Health as it stands at the moment the first member learns of the rebalance (read inside its own log call).
    const atRebalance: MemberHealth[] = [];
    let firstHandle: ProcessorHandle | undefined;
    const first = await runProcessor({
      config,
      topology,
      processor: 'worker',
      services: { 'maybe-hangs': service },
      stallMs: 2_000,
      log: (event) => {
        if (event === 'group.rebalancing' && firstHandle) atRebalance.push(firstHandle.health());
      },
    });
    firstHandle = first;
    const members: ProcessorHandle[] = [first];
    try {
      await first.joined;
      await until('the first member to be ready', () => first.health().ready);
      expect(first.health()).toEqual({ live: true, ready: true, problems: [] });

      // A second member joins: the first one is not ready while the group rebalances, then ready again.
      const second = await runProcessor({
        config,
        topology,
        processor: 'worker',
        services: { 'maybe-hangs': service },
        stallMs: 2_000,
      });
      members.push(second);
      await second.joined;
      await until('the first member to hear of the rebalance', () => atRebalance.length > 0);
      expect(atRebalance[0]).toMatchObject({ live: true, ready: false, problems: ['rebalancing'] });
      await until('both members to be ready', () => first.health().ready && second.health().ready);

      // Records arrive and the enrichment hangs: after stallMs the member handling them is not live.
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic: input,
        messages: Array.from({ length: 10 }, (_, i) => ({
          key: `k${i}`,
          value: serde.encode('agentstreams.test.Event', { key: `k${i}`, eventTime: 1_767_225_600_000 + i, amount: i }),
        })),
      });
      await producer.disconnect();
      await until('a member to report the stall', () => members.some((m) => !m.health().live), 20_000);
      const stalled = members.find((m) => !m.health().live)!;
      expect(stalled.health().problems.join()).toMatch(/no batch completed for \d+ s while \d+ records wait/);
      expect(stalled.health().ready).toBe(false);

      // Unblocked, it completes its batches and is live again.
      hang = false;
      release();
      await until('every member to be live again', () => members.every((m) => m.health().live), 20_000);
    } finally {
      hang = false;
      release();
      for (const m of members) await m.stop();
    }
  }, 120_000);
  it('is not live while a transaction hangs on a broker that stopped answering, and live again when it answers', async () => {
    // A private broker, frozen with SIGSTOP mid-commit: connections stay open and no reply ever comes.
    const broker = await startPrivateBroker('health-stuck');
    const application = uniqueName('stuck').replaceAll('_', '-');
    const input = `${application}.input`;
    const output = `${application}.out`;
    const waiting: Array<() => void> = [];
    const release = (): void => waiting.splice(0).forEach((resume) => resume());
    let gate = true;
    const topology = defineTopology({
      application,
      topics: { [input]: { partitions: 1 }, [output]: { partitions: 1 } },
      processors: {
        worker: processor({
          inputs: [input],
          outputs: { [output]: ['agentstreams.test.Event'] },
          enrich: { service: 'gate', request: () => 1 },
          process: (record, ctx) =>
            ctx.forward({ topic: output, key: record.key, recordType: 'agentstreams.test.Event', value: record.value }),
        }),
      },
    });
    // Holds the first batch until the broker is frozen, so its commit is what meets the frozen broker.
    const service = async (requests: ReadonlyMap<string, unknown>): Promise<Map<string, unknown>> => {
      if (gate) await new Promise<void>((resolve) => waiting.push(resolve));
      return new Map([...requests.keys()].map((k) => [k, 1]));
    };
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    let frozen = false;
    let member: ProcessorHandle | undefined;
    try {
      // The stall check is out of the way (an hour): only the stuck producer can make it not live here.
      member = await runProcessor({
        config: broker.config,
        topology,
        processor: 'worker',
        services: { gate: service },
        stallMs: 3_600_000,
        producerStuckMs: 1_500,
      });
      const m = member;
      await m.joined;
      await until('the member to be ready', () => m.health().ready);
      const producer = broker.kafka.producer();
      await producer.connect();
      await producer.send({
        topic: input,
        messages: Array.from({ length: 5 }, (_, i) => ({
          key: `k${i}`,
          value: serde.encode('agentstreams.test.Event', { key: `k${i}`, eventTime: 1_767_225_600_000 + i, amount: i }),
        })),
      });
      await producer.disconnect();
      await until('the batch to reach the enrichment', () => waiting.length > 0);
      expect(m.health().live).toBe(true);

      broker.freeze();
      frozen = true;
      gate = false;
      release();
      await until('liveness to fail on the stuck transaction', () => !m.health().live, 30_000);
      expect(m.health().problems.join()).toMatch(
        /the transactional producer of partition 0 has been committing a transaction for \d+ s \(bound 1\.5 s\)/,
      );
      expect(m.health().ready).toBe(false);

      // The broker answers again: the transaction completes and the member is live.
      broker.thaw();
      frozen = false;
      await until('the member to be live again', () => m.health().live, 60_000);
      await until('the batch to be committed', () => m.stats.batches >= 1, 60_000);
    } finally {
      if (frozen) broker.thaw();
      gate = false;
      release();
      await member?.stop();
      await broker.remove();
    }
  }, 180_000);
  it('is not ready while it restores state from the changelog', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('restore').replaceAll('_', '-');
    const input = `${application}.input`;
    const topology = windowCountTopology(application, input);
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    const send = async (from: number, count: number): Promise<void> => {
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic: input,
        messages: Array.from({ length: count }, (_, i) => ({
          key: `k${(from + i) % 6}`,
          value: serde.encode('agentstreams.test.Event', {
            key: `k${(from + i) % 6}`,
            eventTime: 1_767_225_600_000 + (from + i) * 100,
            amount: 1,
          }),
        })),
      });
      await producer.disconnect();
    };
    // Health as it stands when the member starts restoring (read inside its own log call).
    const atRecover: MemberHealth[] = [];
    let handle: ProcessorHandle | undefined;
    const member = await runProcessor({
      config,
      topology,
      processor: 'counter',
      log: (event) => {
        if (event === 'state.recover' && handle) atRecover.push(handle.health());
      },
    });
    handle = member;
    const redis = new Redis(config.redis.url);
    try {
      await member.joined;
      await send(0, 60);
      await until('the first records to be processed', () => member.stats.records >= 60);
      await until('the member to be ready', () => member.health().ready);
      expect(atRecover).toEqual([]);
      // Redis loses the member's state: the next batch finds it behind the changelog and restores it first.
      const keys = await redis.keys(`as:{${topology.groupId('counter')}:*`);
      expect(keys.length).toBeGreaterThan(0);
      await redis.del(...keys);
      await send(60, 60);
      await until('the member to restore its state', () => atRecover.length > 0);
      expect(atRecover[0]).toMatchObject({
        live: true,
        ready: false,
        problems: ['restoring state from the changelog'],
      });
      await until('the records to be processed', () => member.stats.records >= 120);
      await until('the member to be ready again', () => member.health().ready);
    } finally {
      redis.disconnect();
      await member.stop();
    }
  }, 120_000);
});
