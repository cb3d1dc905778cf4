/**
 * A changelog topic deleted and recreated under a running application must not freeze its state silently: Redis
 * keeps a checkpoint above anything the new topic holds, so every apply would be fenced as a replay. The member
 * fails loudly instead (AS_STATE_LOST, saying what happened and what to do), on the real stack.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { assertChangelogIntact } from '../../../runtime/state/changelog.ts';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';
import { seededEvents } from '../../support/events.ts';

const root = join(import.meta.dirname, '../../..');

async function until(what: string, done: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('a recreated changelog topic', () => {
  it('stops the member with AS_STATE_LOST instead of fencing every apply and freezing the state', async () => {
    const kafka = kafkaClient();
    const redis = new Redis(config.redis.url);
    const application = uniqueName('relog').replaceAll('_', '-');
    const input = `${application}.input`;
    const topology = windowCountTopology(application, input);
    const changelog = topology.changelogTopic('counter');
    const groupId = topology.groupId('counter');
    const schemas = loadSchemas(join(root, 'test/fixtures/schemas'));
    const registry = registryClient(config);
    await registerSchemas(config, registry, schemas);
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: input, numPartitions: 6 }], waitForLeaders: true });
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const events = seededEvents(1_200, 30, 7);
    const send = (slice: typeof events) =>
      producer.send({
        topic: input,
        acks: -1,
        messages: slice.map((e) => ({ key: e.key, value: serde.encode('agentstreams.test.Event', e) })),
      });
    const checkpoints = async (): Promise<Array<string | null>> =>
      Promise.all(Array.from({ length: 6 }, (_, p) => redis.hget(`as:{${groupId}:${p}}:ckpt`, 'changelog')));

    try {
      // Run 1: state and checkpoints are built up, the changelog holds every change.
      const first = await runProcessor({ config, topology, processor: 'counter' });
      try {
        await send(events.slice(0, 600));
        await until('run 1 to count its input', () => first.stats.records === 600, 60_000);
      } finally {
        await first.stop();
      }
      const before = await checkpoints();
      const highest = Math.max(...before.map((c) => Number(c ?? -1)));
      expect(highest).toBeGreaterThan(0);

      // The changelog topic is deleted (and, below, recreated empty by the next member's start-up).
      await admin.deleteTopics({ topics: [changelog] });
      await until(
        'the changelog topic to be gone',
        async () => !(await admin.listTopics()).includes(changelog),
        30_000,
      );

      // Run 2: it must not process on top of a checkpoint the new changelog cannot back.
      const events2: Array<{ event: string; code?: unknown; message?: unknown }> = [];
      const second = await runProcessor({
        config,
        topology,
        processor: 'counter',
        log: (event, fields) => void events2.push({ event, code: fields?.code, message: fields?.message }),
      });
      try {
        expect((await admin.listTopics()).includes(changelog)).toBe(true);
        await send(events.slice(600));
        await until('a loud AS_STATE_LOST', () => events2.some((e) => e.code === 'AS_STATE_LOST'), 60_000);
        // Give it time to (wrongly) go on, then check it did not.
        await sleep(3_000);
        expect(second.stats.records).toBe(0);
        // Liveness says so: the consumer stopped for good, and /healthz fails so the platform restarts the member.
        await until('liveness to fail', async () => !second.health().live, 60_000);
        expect(second.health().problems.join()).toMatch(
          /the consumer crashed and will not restart: Changelog .* deleted and recreated/,
        );
        expect(second.health().ready).toBe(false);
      } finally {
        await second.stop();
      }
      const lost = events2.find((e) => e.code === 'AS_STATE_LOST')!;
      expect(lost.event).toBe('batch.error');
      expect(lost.message).toMatch(
        /^Changelog .*\.counter\.changelog\[\d\] ends at offset \d+, but this task's state was written up to offset \d+ .*deleted and recreated/,
      );
      // Redis was left as it was: nothing was applied on top of it.
      expect(await checkpoints()).toEqual(before);

      // The check itself: the claims of a partition against the new topic's end.
      const p = before.findIndex((c) => Number(c ?? -1) === highest);
      await expect(
        assertChangelogIntact(kafka, changelog, p, { checkpoint: highest, committed: -1 }),
      ).rejects.toMatchObject({ code: 'AS_STATE_LOST', retriable: false });
      await expect(
        assertChangelogIntact(kafka, changelog, p, { checkpoint: -1, committed: -1 }),
      ).resolves.toBeUndefined();
    } finally {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [input, changelog, `${application}.counts`] }).catch(() => undefined);
      await admin.disconnect();
      await redis.eval(
        "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n",
        0,
        `as:{${groupId}:*`,
      );
      redis.disconnect();
    }
  }, 180_000);
});
