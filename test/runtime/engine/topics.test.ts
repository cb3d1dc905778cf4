/**
 * Topic settings in the topology: validated when the topology is defined, applied by ensureTopics when it creates
 * topics (checked with describeConfigs on the shared broker), and checked against topics that already exist.
 */
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../../runtime/errors.ts';
import { defaultRuntimeTopicRetentionMs, ensureTopics, topicPlans } from '../../../runtime/engine/topics.ts';
import { defineTopology, processor, type TopicSpec, type TopologySpec } from '../../../runtime/topology/topology.ts';
import { kafkajsAdmin, uniqueName } from '../../support/stack.ts';

const { ConfigResourceTypes } = kafkajs;

function topologyWith(
  input: TopicSpec,
  extra: Partial<TopologySpec> = {},
  application = 'topics-test',
): ReturnType<typeof defineTopology> {
  const inputTopic = `${application}.input`;
  const output = `${application}.output`;
  return defineTopology({
    application,
    topics: { [inputTopic]: input, [output]: { partitions: input.partitions } },
    processors: {
      pass: processor({ inputs: [inputTopic], outputs: { [output]: ['x'] }, stores: ['s'], process: () => {} }),
    },
    ...extra,
  });
}

function problemsOf(define: () => unknown): string {
  try {
    define();
  } catch (error) {
    expect((error as { code?: string }).code).toBe(ErrorCode.TOPOLOGY_INVALID);
    return (error as Error).message;
  }
  throw new Error('the topology was accepted');
}

describe('topic specs are validated when the topology is defined', () => {
  it('refuses a replication factor that is not a positive integer', () => {
    expect(problemsOf(() => topologyWith({ partitions: 3, replicationFactor: 0 }))).toContain(
      'topic "topics-test.input" needs a replication factor of at least 1 (an integer), got 0',
    );
    expect(problemsOf(() => topologyWith({ partitions: 3, replicationFactor: 1.5 }))).toContain('got 1.5');
    expect(problemsOf(() => topologyWith({ partitions: 3 }, { replicationFactor: -1 }))).toContain(
      "the topology's replicationFactor must be an integer of at least 1, got -1",
    );
  });

  it('refuses min.insync.replicas above the replication factor, the topic’s or the topology’s', () => {
    expect(problemsOf(() => topologyWith({ partitions: 3, replicationFactor: 2, minInsyncReplicas: 3 }))).toContain(
      'topic "topics-test.input" has minInsyncReplicas 3 above its replication factor 2',
    );
    expect(problemsOf(() => topologyWith({ partitions: 3, minInsyncReplicas: 2 }, { replicationFactor: 1 }))).toContain(
      'minInsyncReplicas 2 above its replication factor 1',
    );
    expect(
      problemsOf(() =>
        topologyWith({ partitions: 3 }, { replicationFactor: 1, deadLetters: { minInsyncReplicas: 2 } }),
      ),
    ).toContain('deadLetters has minInsyncReplicas 2');
    expect(problemsOf(() => topologyWith({ partitions: 3, minInsyncReplicas: 0 }))).toContain(
      'needs minInsyncReplicas of at least 1',
    );
  });

  it('refuses an unknown cleanup policy, a contradictory one and a bad retention', () => {
    expect(problemsOf(() => topologyWith({ partitions: 3, cleanupPolicy: 'compacted' as never }))).toContain(
      `topic "topics-test.input" has cleanup policy "compacted"; use one of 'delete', 'compact', 'compact,delete'`,
    );
    expect(problemsOf(() => topologyWith({ partitions: 3, compact: true, cleanupPolicy: 'delete' }))).toContain(
      "says compact: true and cleanupPolicy: 'delete'",
    );
    expect(problemsOf(() => topologyWith({ partitions: 3, retentionMs: 0 }))).toContain(
      'needs retentionMs of at least 1 ms, or -1',
    );
    expect(problemsOf(() => topologyWith({ partitions: 3 }, { lateRecords: { partitions: 0 } }))).toContain(
      'lateRecords needs 1–1000 partitions, got 0',
    );
  });

  it('accepts every valid setting and plans the dead-letter and late topics from the inputs', () => {
    const topology = topologyWith(
      { partitions: 6, replicationFactor: 3, minInsyncReplicas: 2, retentionMs: -1, cleanupPolicy: 'compact,delete' },
      { replicationFactor: 3 },
    );
    const plans = topicPlans(topology, 'pass');
    expect(plans.get('topics-test.input')).toEqual({
      partitions: 6,
      replicationFactor: 3,
      minInsyncReplicas: 2,
      strictPartitions: true,
      configEntries: [
        { name: 'cleanup.policy', value: 'compact,delete' },
        { name: 'retention.ms', value: '-1' },
        { name: 'min.insync.replicas', value: '2' },
      ],
    });
    expect(plans.get(topology.deadLetterTopic)).toMatchObject({
      partitions: 6,
      replicationFactor: 3,
      strictPartitions: false,
    });
    expect(plans.get(topology.deadLetterTopic)!.configEntries).toContainEqual({
      name: 'retention.ms',
      value: String(defaultRuntimeTopicRetentionMs),
    });
    expect(plans.get(topology.changelogTopic('pass'))).toMatchObject({
      partitions: 6,
      replicationFactor: 3,
      strictPartitions: true,
    });
    expect(plans.get(topology.changelogTopic('pass'))!.configEntries).toContainEqual({
      name: 'cleanup.policy',
      value: 'compact',
    });
    // Without any replication declared, nothing about replication is sent: the broker's defaults apply as before.
    const plain = topicPlans(topologyWith({ partitions: 2 }), 'pass');
    expect(plain.get('topics-test.input')).toEqual({ partitions: 2, strictPartitions: true, configEntries: [] });
    expect(
      topicPlans(
        topologyWith({ partitions: 2 }, { deadLetters: { partitions: 1, retentionMs: 3_600_000 } }),
        'pass',
      ).get('topics-test.dead-letters'),
    ).toMatchObject({
      partitions: 1,
      configEntries: [{ name: 'retention.ms', value: '3600000' }],
    });
  });
});

describe('ensureTopics on the shared broker', () => {
  const admin = kafkajsAdmin();
  beforeAll(() => admin.connect());
  afterAll(() => admin.disconnect());

  async function configsOf(topics: string[]): Promise<Record<string, Record<string, string>>> {
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: topics.map((name) => ({
        type: ConfigResourceTypes.TOPIC,
        name,
        configNames: ['cleanup.policy', 'retention.ms', 'min.insync.replicas'],
      })),
    });
    return Object.fromEntries(
      described.resources.map((r) => [
        r.resourceName,
        Object.fromEntries(r.configEntries.map((e) => [e.configName, e.configValue])),
      ]),
    );
  }

  it('creates topics with the declared retention, cleanup policy, replication and min.insync.replicas', async () => {
    const application = uniqueName('topics').replaceAll('_', '-');
    const topology = topologyWith(
      { partitions: 4, retentionMs: 7_200_000, cleanupPolicy: 'compact,delete', minInsyncReplicas: 1 },
      { replicationFactor: 1 },
      application,
    );
    expect(await ensureTopics(admin, topology, 'pass')).toBe(4);
    const input = `${application}.input`;
    const configs = await configsOf([
      input,
      topology.deadLetterTopic,
      topology.lateTopic,
      topology.changelogTopic('pass'),
    ]);
    expect(configs[input]).toEqual({
      'cleanup.policy': 'compact,delete',
      'retention.ms': '7200000',
      'min.insync.replicas': '1',
    });
    expect(configs[topology.deadLetterTopic]).toMatchObject({
      'cleanup.policy': 'delete',
      'retention.ms': String(defaultRuntimeTopicRetentionMs),
    });
    expect(configs[topology.lateTopic]!['retention.ms']).toBe(String(defaultRuntimeTopicRetentionMs));
    expect(configs[topology.changelogTopic('pass')]!['cleanup.policy']).toBe('compact');
    const metadata = await admin.fetchTopicMetadata({ topics: [input, topology.deadLetterTopic, topology.lateTopic] });
    expect(
      metadata.topics
        .map((t) => [t.name, t.partitions.length, Math.max(...t.partitions.map((p) => p.replicas.length))])
        .sort(),
    ).toEqual(
      [
        [input, 4, 1],
        [topology.deadLetterTopic, 4, 1],
        [topology.lateTopic, 4, 1],
      ].sort(),
    );
    // Idempotent: a second member finds everything in place.
    expect(await ensureTopics(admin, topology, 'pass')).toBe(4);
  });

  it('keeps an existing one-partition dead-letter topic, and names a replication-factor mismatch', async () => {
    const application = uniqueName('topics').replaceAll('_', '-');
    const topology = topologyWith({ partitions: 3 }, {}, application);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic: topology.deadLetterTopic, numPartitions: 1 },
        { topic: topology.lateTopic, numPartitions: 1 },
      ],
    });
    expect(await ensureTopics(admin, topology, 'pass')).toBe(3);

    // The single broker cannot hold 3 copies: creating fails with what to do.
    const wantsThree = topologyWith(
      { partitions: 3 },
      { replicationFactor: 3 },
      uniqueName('topics').replaceAll('_', '-'),
    );
    const refused = await ensureTopics(admin, wantsThree, 'pass').catch((e: unknown) => e as Error);
    expect((refused as { code?: string }).code).toBe(ErrorCode.TOPOLOGY_INVALID);
    expect((refused as Error).message).toMatch(/the cluster has fewer brokers\. Lower replicationFactor/);

    // Existing topics with 1 replica against a declared 2: refused, naming the topic and both factors.
    const declaresTwo = defineTopology({
      ...topology,
      topics: {
        ...topology.topics,
        [`${application}.input`]: { partitions: 3, replicationFactor: 2, minInsyncReplicas: 1 },
      },
    });
    const mismatch = await ensureTopics(admin, declaresTwo, 'pass').catch((e: unknown) => e as Error);
    expect((mismatch as Error).message).toContain(
      `${application}.input has replication factor 1, the topology declares 2`,
    );
  });
});
